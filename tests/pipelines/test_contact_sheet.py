"""scripts/contact_sheet.py, the sheet to look at after a change to pixels, still renders."""

import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import contact_sheet


def test_the_sheet_has_a_row_per_photo_and_one_of_model_shots(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert contact_sheet.main(["--out", str(out), "--models", str(tmp_path)]) == 0
    columns = 1 + len(contact_sheet.GARMENTS)
    rows = len(contact_sheet.photos()) + 1
    tile_height = contact_sheet.TILE[1] + contact_sheet.LABEL_HEIGHT
    with Image.open(out) as sheet:
        assert sheet.size == (columns * contact_sheet.TILE[0], rows * tile_height)
    assert set(json.loads(capsys.readouterr().out)["seconds"]) == {
        "astronaut", "grace hopper", "model shots"
    }  # fmt: skip
