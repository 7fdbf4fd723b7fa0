"""Model files: code hidden in a pickle never runs, a link out of MODELS_DIR is not followed,
a sha256 manifest lets only the files it lists load, and nothing runs while torch is told to
unpickle checkpoints fully. The Django side (worker jobs, listings, admin): tests/tryon."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipelines import cache, generate, selection
from pipelines.__main__ import main
from pipelines.errors import InvalidInputError, UntrustedModelError
from pipelines.garment import find_sam_checkpoint, load_sam_predictor
from pipelines.loading import (
    NO_WEIGHTS_ONLY_VARIABLE,
    check_safe_loading_environment,
    load_state_dict,
)
from pipelines.params import GenerationParams
from pipelines.registry import check_inside_models_dir, manifest_lines, model_files, scan_models
from pipelines.samples import draw_product_shot
from tests.pipelines.test_garment import tiny_sam

ROOT = Path(__file__).resolve().parents[2]
# Where a malicious pickle goes: every folder whose files a worker or the CLI may read.
EVIL_FILES = (
    "checkpoints/evil.ckpt",
    "controlnet/evil.pth",
    "loras/evil.bin",
    "sams/sam_vit_b_evil.pth",
)


class _CreatesAFile:
    """Unpickled with full unpickling, this object is ``open(marker, "w")``: it creates a file.

    Only builtins are named, so any process (the CLI, a worker) would run it, not only this one.
    """

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_evil_checkpoint(path: Path, marker: Path) -> None:
    """A checkpoint that looks like weights and creates ``marker`` when fully unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": _CreatesAFile(marker)}, path)


def evil_models_dir(tiny_kit: Path, folder: Path) -> tuple[Path, Path]:
    """``(models_dir, marker)``: the tiny kit plus a malicious pickle in each model folder."""
    models = folder / "models"
    shutil.copytree(tiny_kit, models)
    marker = folder / "code-from-a-checkpoint-ran"
    for name in EVIL_FILES:
        write_evil_checkpoint(models / name, marker)
    return models, marker


@pytest.fixture
def evil_models(tiny_kit, tmp_path) -> tuple[Path, Path]:
    return evil_models_dir(tiny_kit, tmp_path)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != NO_WEIGHTS_ONLY_VARIABLE}
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- malicious pickles ---------------------------------------------------------------------------


def test_the_cli_lists_malicious_pickles_and_refuses_to_run_with_them(
    evil_models, tmp_path, capsys
):
    models, marker = evil_models
    listing = _cli("models", "--models", str(models))
    assert listing.returncode == 0, listing.stderr
    listed = {f"{m['kind']}/{Path(m['path']).name}" for m in json.loads(listing.stdout)}
    assert set(EVIL_FILES) <= listed

    draw_product_shot("tshirt", size=(384, 512)).image.save(tmp_path / "tee.png")
    run = ["modelshot", "--garment", str(tmp_path / "tee.png"), "-c", "upper"]
    run += ["--out", str(tmp_path / "out"), "--engine", "sd", "--models", str(models)]
    run += ["--steps", "2", "--width", "128", "--height", "192"]
    # The tiny checkpoint loads; the LoRA, the one pickle that reaches torch.load, is refused.
    assert main([*run, "--prompt", "<lora:evil:1>"]) == 2
    assert "evil.bin needs full unpickling, which can run code" in capsys.readouterr().err
    assert main([*run, "--checkpoint", "evil"]) == 2
    # A checkpoint is read tensor-only too, so the pickle that would run code is refused.
    assert "evil.ckpt needs full unpickling, which can run code" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out" / "result.png").exists()

    # The fixture is live: full unpickling does run its code.
    torch.load(models / "loras/evil.bin", weights_only=False)
    assert marker.exists()


def test_nothing_starts_while_torch_is_told_to_unpickle_fully(evil_models):
    models, marker = evil_models
    refused = _cli("models", "--models", str(models), **{NO_WEIGHTS_ONLY_VARIABLE: "1"})
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"error: {NO_WEIGHTS_ONLY_VARIABLE}=1 is set" in refused.stderr
    assert not marker.exists()


def test_only_the_values_torch_takes_as_true_refuse():
    for value in ("1", "y", "YES", "true"):
        with pytest.raises(UntrustedModelError, match=NO_WEIGHTS_ONLY_VARIABLE):
            check_safe_loading_environment({NO_WEIGHTS_ONLY_VARIABLE: value})
    for value in ("", "0", "false", "no"):
        check_safe_loading_environment({NO_WEIGHTS_ONLY_VARIABLE: value})
    check_safe_loading_environment({})


# --- SAM stays inside MODELS_DIR -----------------------------------------------------------------


def test_a_sam_checkpoint_linked_from_outside_models_dir_is_refused(tmp_path):
    weights = tmp_path / "elsewhere" / "sam_vit_b.safetensors"
    weights.parent.mkdir()
    save_file(tiny_sam().state_dict(), weights)
    models = tmp_path / "models"
    (models / "sams").mkdir(parents=True)
    (models / "sams" / "sam_vit_b_linked.safetensors").symlink_to(weights)
    linked = find_sam_checkpoint(models)
    assert linked is not None

    with pytest.raises(InvalidInputError, match="outside the models folder"):
        load_sam_predictor(linked, models_dir=models, builder=tiny_sam)
    # A link that stays inside MODELS_DIR is followed.
    shutil.move(weights, models / "sams" / "real.safetensors")
    linked.unlink()
    linked.symlink_to("real.safetensors")
    assert load_sam_predictor(linked, models_dir=models, builder=tiny_sam) is not None


def test_the_folders_linked_into_a_diffusers_folder_are_checked_too(tmp_path):
    models = tmp_path / "models"
    net = models / "controlnet" / "linked-net"
    net.mkdir(parents=True)
    (net / "config.json").write_text("{}")
    shared = models / "shared"
    shared.mkdir()
    (shared / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    (net / "inside").symlink_to(shared)
    (entry,) = scan_models(models)
    check_inside_models_dir(entry)
    assert model_files(entry) == [net / "inside" / "diffusion_pytorch_model.safetensors"]

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "deep" / "x.bin").write_bytes(b"never listed")
    (net / "outside").symlink_to(elsewhere)
    with pytest.raises(InvalidInputError, match="linked-net/outside leads outside"):
        check_inside_models_dir(entry)
    assert model_files(entry) == [net / "inside" / "diffusion_pytorch_model.safetensors"]


# --- the sha256 manifest -------------------------------------------------------------------------


def test_with_a_manifest_only_listed_unchanged_files_load(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    safe, pickled = models / "loras/a b.safetensors", models / "loras/b.pth"
    save_file({"w": torch.ones(2)}, safe)
    torch.save({"w": torch.arange(2.0)}, pickled)
    manifest = tmp_path / "manifest.sha256"
    args = ["models", "--models", str(models), "--write-manifest", str(manifest)]
    assert main(args) == 0
    capsys.readouterr()
    assert manifest.read_text() == (
        f"{_sha256(safe)}  loras/a b.safetensors\n{_sha256(pickled)}  loras/b.pth\n"
    )
    if sha256sum := shutil.which("sha256sum"):  # the format is sha256sum's: it checks it
        subprocess.run([sha256sum, "--check", "--quiet", manifest], cwd=models, check=True)
    for path in (safe, pickled):
        assert list(load_state_dict(path, models_dir=models, manifest=manifest)) == ["w"]

    added = models / "loras/c.safetensors"
    save_file({"w": torch.ones(2)}, added)
    with pytest.raises(UntrustedModelError) as unlisted:
        load_state_dict(added, models_dir=models, manifest=manifest)
    assert "loras/c.safetensors is not in the models manifest" in str(unlisted.value)
    assert f"`cd {models} && sha256sum loras/c.safetensors >> {manifest}`" in str(unlisted.value)
    # The manifest is parsed once per version of the file: an added line counts at once.
    with manifest.open("a") as appended:
        appended.write(f"{_sha256(added)}  loras/c.safetensors\n")
    assert list(load_state_dict(added, models_dir=models, manifest=manifest)) == ["w"]

    save_file({"w": torch.zeros(2)}, safe)
    with pytest.raises(UntrustedModelError, match=r"'loras/a b\.safetensors' >>") as changed:
        load_state_dict(safe, models_dir=models, manifest=manifest)
    assert "loras/a b.safetensors changed since it was added" in str(changed.value)

    manifest.write_text(f"{_sha256(pickled)} loras/b.pth\n")  # one space: not sha256sum's
    with pytest.raises(UntrustedModelError, match="line 1, is not"):
        load_state_dict(pickled, models_dir=models, manifest=manifest)
    with pytest.raises(UntrustedModelError, match="cannot be read"):
        load_state_dict(pickled, models_dir=models, manifest=tmp_path / "missing.sha256")


def test_the_cli_takes_the_manifest_from_its_option_or_models_manifest(
    tiny_kit, tmp_path, capsys, monkeypatch
):
    draw_product_shot("tshirt", size=(384, 512)).image.save(tmp_path / "tee.png")
    run = ["modelshot", "--garment", str(tmp_path / "tee.png"), "-c", "upper"]
    run += ["--out", str(tmp_path / "out"), "--engine", "sd", "--models", str(tiny_kit)]
    run += ["--steps", "2", "--width", "128", "--height", "192"]
    empty = tmp_path / "empty.sha256"
    empty.write_text("# nothing is trusted yet\n")
    assert main([*run, "--manifest", str(empty)]) == 2
    error = capsys.readouterr().err
    assert "checkpoints/tiny-sd-inpaint/text_encoder/model.safetensors is not in" in error
    monkeypatch.setenv("MODELS_MANIFEST", str(empty))
    assert main(run) == 2
    assert "is not in the models manifest" in capsys.readouterr().err
    assert not (tmp_path / "out" / "result.png").exists()


def test_the_generator_loads_nothing_the_manifest_lacks(tiny_kit, tmp_path):
    models = selection.select_models(tiny_kit, GenerationParams())
    lines = manifest_lines(scan_models(tiny_kit), tiny_kit)
    manifest = tmp_path / "manifest.sha256"

    def runtime(*, leave_out: str) -> generate.RuntimeConfig:
        manifest.write_text("".join(f"{line}\n" for line in lines if leave_out not in line))
        return generate.RuntimeConfig(device="cpu", dtype="fp32", manifest=manifest)

    cache.clear()
    loads = cache.load_count()
    with pytest.raises(UntrustedModelError, match="controlnet/tiny-canny/diffusion_pytorch_model"):
        generate.Generator(models, runtime(leave_out="tiny-canny"))
    assert cache.load_count() == loads  # not even the listed checkpoint was loaded

    generator = generate.Generator(models, runtime(leave_out="tiny-lora"))
    with pytest.raises(UntrustedModelError, match=r"loras/tiny-lora\.safetensors is not in"):
        generator.use_loras((("tiny-lora", 0.5),))
    manifest.write_text("".join(f"{line}\n" for line in lines))
    assert set(generator.use_loras((("tiny-lora", 0.5),))) == {"tiny-lora"}
