"""``python -m pipelines panel``, the sheet to look at after a change to pixels, renders every
demo garment on every packaged photo and a model shot per pose."""

import json

from PIL import Image

from pipelines import panel
from pipelines.__main__ import main
from pipelines.poses import PRESETS
from pipelines.samples import DEMO_LOOKS


def test_the_panel_has_a_row_per_photo_and_one_of_model_shots(tmp_path, capsys):
    assert main(["panel", "--out", str(tmp_path / "sheet"), "--models", str(tmp_path)]) == 0
    written = json.loads(capsys.readouterr().out)
    columns = max(1 + len(DEMO_LOOKS), len(PRESETS))
    rows = len(panel.photos()) + 1
    with Image.open(tmp_path / "sheet" / "panel.png") as sheet:
        assert sheet.size == (columns * panel.TILE[0], rows * (panel.TILE[1] + panel.LABEL_HEIGHT))
    assert set(written["row_seconds"]) == {"astronaut", "grace hopper", "model shots"}
