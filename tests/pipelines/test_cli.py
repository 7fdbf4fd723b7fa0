"""``python -m pipelines``: analyze, garment, preview and poses on real and drawn pictures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from pipelines.__main__ import main
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.poses import CANVAS, PRESETS
from pipelines.samples import draw_product_shot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    draw_product_shot("tshirt", size=(384, 512), label="TRY").image.save(folder / "tee.png")
    (folder / "notes.txt").write_text("not a picture")
    Image.new("RGB", (100, 300), "white").save(folder / "small.png")
    Image.new("RGB", (400, 400), (120, 160, 120)).save(folder / "empty_room.png")
    return folder


def _sizes(folder: Path, *names) -> set:
    return {Image.open(folder / name).size for name in names}


def test_analyze_writes_keypoints_and_maps_of_the_photos_size(pictures, tmp_path):
    assert main(["analyze", str(pictures / "astronaut.png"), "--out", str(tmp_path)]) == 0
    keypoints = json.loads((tmp_path / "keypoints.json").read_text())
    assert (keypoints["width"], keypoints["height"]) == (512, 512)
    assert len(keypoints["body"]) == 18
    nose, neck, r_shoulder, l_shoulder = (keypoints["body"][i] for i in (0, 1, 2, 5))
    assert nose[2] > 0.5 and r_shoulder[0] < l_shoulder[0]
    assert neck[1] > nose[1]
    assert set(keypoints["hands"]) == {"right", "left"}
    assert len(keypoints["face"]) in (0, 68)
    assert _sizes(tmp_path, "openpose.png", "person_mask.png", "canny.png") == {(512, 512)}
    silhouette = np.asarray(Image.open(tmp_path / "person_mask.png"))
    assert silhouette[300, 200] == 255 and silhouette[5, 5] == 0


def test_garment_writes_cutout_mask_canny_and_landmarks(pictures, tmp_path):
    assert main(["garment", str(pictures / "tee.png"), "-c", "upper", "--out", str(tmp_path)]) == 0
    assert _sizes(tmp_path, "cutout.png", "mask.png", "canny.png") == {(384, 512)}
    assert Image.open(tmp_path / "cutout.png").mode == "RGBA"
    landmarks = json.loads((tmp_path / "landmarks.json").read_text())
    assert {"r_shoulder", "l_shoulder", "r_sleeve_end", "l_sleeve_end", "r_hem", "l_hem"} <= set(
        landmarks
    )


def test_preview_writes_the_composite_and_timings(pictures, tmp_path):
    args = [
        "preview",
        "--person",
        str(pictures / "astronaut.png"),
        "--garment",
        str(pictures / "tee.png"),
        "-c",
        "upper",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    names = ("mask.png", "composite.png", "openpose.png", "canny.png")
    assert _sizes(tmp_path, *names) == {(512, 512)}
    timings = json.loads((tmp_path / "run.json").read_text())["timings_ms"]
    assert {"person", "mask", "warp", "composite", "total", "load", "garment"} <= set(timings)
    per_tryon = timings["person"] + timings["mask"] + timings["warp"] + timings["composite"]
    # Each figure is rounded to 0.1 ms, so their sum may pass the rounded total by a little.
    slack = 0.05 * 5
    assert per_tryon - slack <= timings["total"] < per_tryon + timings["load"] + timings["garment"]
    photo = np.asarray(Image.open(pictures / "astronaut.png").convert("RGB"))
    preview = np.asarray(Image.open(tmp_path / "composite.png"))
    outside = np.asarray(Image.open(tmp_path / "mask.png")) == 0
    assert np.array_equal(preview[outside], photo[outside])
    assert not np.array_equal(preview, photo)


def test_poses_lists_and_renders_the_presets(tmp_path, capsys):
    assert main(["poses"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [pose["name"] for pose in listing] == list(PRESETS)
    assert main(["poses", "--out", str(tmp_path)]) == 0
    for name in PRESETS:
        rendered = np.asarray(Image.open(tmp_path / f"{name}.png"))
        assert rendered.shape == (CANVAS[1], CANVAS[0], 3) and rendered.max() > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "{pictures}/notes.txt"], "photo: {pictures}/notes.txt is not a picture"),
        (["analyze", "{pictures}/missing.png"], "photo: no such file"),
        (["analyze", "{pictures}/small.png"], "128"),
        (["analyze", "{pictures}/empty_room.png"], "no person found"),
        (["garment", "{pictures}/tee.png", "-c", "hat"], "invalid choice: 'hat'"),
        (["garment", "{pictures}/empty_room.png", "-c", "upper"], "no garment"),
    ],
    ids=["not-a-picture", "missing", "too-small", "no-person", "bad-category", "no-garment"],
)
def test_bad_input_exits_2_with_one_line(pictures, tmp_path, capsys, args, message):
    args = [arg.format(pictures=pictures) for arg in args] + ["--out", str(tmp_path / "out")]
    try:
        code = main(args)
    except SystemExit as usage_error:  # argparse's own checks exit instead of returning
        code = usage_error.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ")
    assert message.format(pictures=pictures) in error


def test_the_module_runs_as_a_program(pictures):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "garment",
            str(pictures / "notes.txt"),
            "-c",
            "upper",
            "--out",
            "/tmp/unused",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: image: {pictures / 'notes.txt'} is not a picture Pillow can read"
    ]


def test_models_lists_the_tiny_kit_with_webui_hashes(tiny_kit, capsys):
    import hashlib

    assert main(["models", "--models", str(tiny_kit)]) == 0
    listing = json.loads(capsys.readouterr().out)
    kinds = sorted(entry["kind"] for entry in listing)
    assert kinds == ["checkpoints", "controlnet", "controlnet", "loras"]
    canny = next(entry for entry in listing if entry["name"] == "tiny-canny")
    weights = Path(canny["path"]) / "diffusion_pytorch_model.safetensors"
    assert canny["hash"] == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]


def test_make_tiny_writes_a_kit_the_registry_finds(tmp_path, capsys):
    from pipelines.registry import scan_models

    assert main(["make-tiny", str(tmp_path / "kit")]) == 0
    assert {entry.kind for entry in scan_models(tmp_path / "kit")} == {
        "checkpoints",
        "controlnet",
        "loras",
    }


def test_samplers_lists_the_webui_names(capsys):
    assert main(["samplers"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert {"Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DDIM", "UniPC", "LCM"} <= set(names)


WEBUI_INFOTEXT = (
    "a woman in a (red:1.2) dress, studio light\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, "
    "Version: v1.6.0"
)


def test_infotext_reads_a_png_and_a_text_file(tmp_path, capsys):
    from pipelines.infotext import save_png_with_infotext

    save_png_with_infotext(Image.new("RGB", (64, 64)), tmp_path / "shot.png", WEBUI_INFOTEXT)
    (tmp_path / "shot.txt").write_text(WEBUI_INFOTEXT)
    for name in ("shot.png", "shot.txt"):
        assert main(["infotext", str(tmp_path / name)]) == 0
        parsed = json.loads(capsys.readouterr().out)
        assert parsed["Prompt"] == "a woman in a (red:1.2) dress, studio light"
        assert parsed["Negative prompt"] == "blurry, lowres"
        assert parsed["Sampler"] == "DPM++ 2M Karras"
        assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
        assert parsed["Clip skip"] == "1"  # the WebUI's default for a missing key


def test_prompt_shows_weights_and_loras_as_the_webui_reads_them(capsys):
    assert main(["prompt", "a (red:1.5) [dress] <lora:silk:0.8>, BREAK studio"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    weights = {text.strip(): weight for text, weight in parsed["chunks"]}
    assert weights["red"] == pytest.approx(1.5)
    assert weights["dress"] == pytest.approx(1 / 1.1)
    assert ["BREAK", -1.0] in parsed["chunks"]
    assert parsed["loras"] == [["silk", 0.8]]


def _generation_args(pictures, tiny_kit, out, *extra) -> list[str]:
    return [
        "--garment",
        str(pictures / "tee.png"),
        "-c",
        "upper",
        "--out",
        str(out),
        "--engine",
        "sd",
        "--models",
        str(tiny_kit),
        "--steps",
        "2",
        "--width",
        "128",
        "--height",
        "192",
        *extra,
    ]


def test_tryon_writes_a_batch_with_its_maps_and_parameters(pictures, tiny_kit, tmp_path):
    args = _generation_args(pictures, tiny_kit, tmp_path, "--seed", "9", "--batch", "2")
    assert main(["tryon", "--person", str(pictures / "astronaut.png"), *args]) == 0

    names = ("result-0.png", "result-1.png", "mask.png", "openpose.png", "canny.png")
    assert _sizes(tmp_path, *names, "composite.png") == {(512, 512)}
    run_info = json.loads((tmp_path / "run.json").read_text())
    assert [image["seed"] for image in run_info["images"]] == [9, 10]
    assert run_info["engine"] == "sd" and run_info["params"]["steps"] == 2
    second = read_png_infotext(tmp_path / "result-1.png")
    assert parse_infotext(second)["Seed"] == "10"


def test_modelshot_takes_a_scene_preset_or_free_words(pictures, tiny_kit, tmp_path, capsys):
    preset = tmp_path / "preset"
    args = _generation_args(pictures, tiny_kit, preset, "--pose", "three_quarter")
    assert main(["modelshot", *args, "--scene", "park", "--model-attrs", "hair=short curly"]) == 0
    # A model shot takes the hires pass by default: twice the 128 × 192 asked for.
    assert _sizes(preset, "result.png", "mask.png", "composite.png") == {(256, 384)}
    info = parse_infotext(read_png_infotext(preset / "result.png"))
    assert info["Scene"] == "park" and info["Pose"] == "three_quarter"
    assert "short curly hair" in info["Prompt"]

    free = tmp_path / "free"
    args = _generation_args(pictures, tiny_kit, free)
    assert main(["modelshot", *args, "--scene", "rooftop garden at dusk"]) == 0
    assert (
        "rooftop garden at dusk" in parse_infotext(read_png_infotext(free / "result.png"))["Prompt"]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "sd", "--models", "{empty}"], "fetch_models"),
        (["--steps", "0"], "steps: must be from 1 to 150"),
        (["--sampler", "Nope"], "sampler_name: unknown sampler"),
        (["--model-attrs", "hair"], "model-attrs"),
        (["--pose", "cartwheel"], "pose: unknown pose"),
    ],
)
def test_modelshot_bad_input_exits_2(pictures, tiny_kit, tmp_path, capsys, extra, message):
    extra = [part.replace("{empty}", str(tmp_path / "empty")) for part in extra]
    args = _generation_args(pictures, tiny_kit, tmp_path / "out") + extra
    assert main(["modelshot", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
