"""Full-size SD 1.5 files in the WebUI's formats run the ``sd`` engine with the shipped configs.

Run from the repository root: ``python bench/full_size_formats.py`` (a few minutes, about 6 GB
of disk in a temporary folder, 12 GB of memory at most). The last stdout line is one JSON object.

Random-weight files of the released sizes and key layouts (tests/model_files.py) are written,
fp16, into a temporary MODELS_DIR under the names people have them —
``checkpoints/sd15-inpainting.safetensors`` and ``checkpoints/sd15.safetensors`` (CompVis
layout, 9 and 4 UNet channels), ``controlnet/control_v11p_sd15_openpose.pth`` and
``…_canny.pth`` (lllyasviel's pickles), ``vae/vae-ft-mse-840000-ema-pruned.safetensors`` — with
no ``.config`` folders: the architecture comes from the keys, the configs from
``pipelines/configs``, the tokenizer from ``pipelines.clip_tokenizer``. Then the CLI's
``tryon`` and ``modelshot`` run one step at 256 × 256 on them, as a user would. Random weights
paint noise: this proves loading and running at full size, not picture quality.

With ``--sdxl`` (or ``--sdxl-only``) it also writes a full-size SDXL inpainting checkpoint
(Stability's layout, fp16, 6.9 GB) and loads it with the shipped SDXL configs in fp16
(``sdxl_load``: seconds and parameter counts). Painting at full SDXL size is not attempted
here: in fp32 the UNet, both text encoders and two 1.25-billion-parameter SDXL ControlNets need
about 24 GB, this machine's whole memory.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from pipelines.samples import draw_product_shot  # noqa: E402
from tests import model_files as mf  # noqa: E402


def _write_models(models: Path) -> dict[str, float]:
    """The WebUI-named full-size files; seconds spent writing each."""
    spent = {}
    for name, inpainting in (("sd15-inpainting", True), ("sd15", False)):
        started = time.perf_counter()
        path = models / "checkpoints" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        mf.write_sd15_checkpoint(path, **mf.sd15_configs(inpainting), dtype=torch.float16)
        spent[name] = round(time.perf_counter() - started, 1)
    unet_config = mf.sd15_configs()["unet_config"]
    for kind in ("openpose", "canny"):
        started = time.perf_counter()
        path = models / "controlnet" / f"control_v11p_sd15_{kind}.pth"
        path.parent.mkdir(exist_ok=True)
        mf.write_controlnet_pth(path, mf.controlnet_config(unet_config), dtype=torch.float16)
        spent[kind] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    (models / "vae").mkdir()
    vae = models / "vae" / "vae-ft-mse-840000-ema-pruned.safetensors"
    mf.write_vae(vae, mf.sd15_configs()["vae_config"], dtype=torch.float16)
    spent["vae"] = round(time.perf_counter() - started, 1)
    return spent


def _sdxl_load(work: Path) -> dict:
    """Write the full-size SDXL inpainting checkpoint and load it with the shipped configs."""
    from pipelines.loading import _load_checkpoint_components
    from pipelines.registry import scan_models

    path = work / "xl" / "checkpoints" / "sd_xl_inpainting.safetensors"
    path.parent.mkdir(parents=True)
    started = time.perf_counter()
    torch.set_default_dtype(torch.float16)  # build in half: the fp32 models would not fit twice
    try:
        mf.write_sdxl_checkpoint(path, **mf.sdxl_configs(inpainting=True), dtype=torch.float16)
    finally:
        torch.set_default_dtype(torch.float32)
    written = round(time.perf_counter() - started, 1)
    (entry,) = scan_models(work / "xl")
    started = time.perf_counter()
    components = _load_checkpoint_components(entry, torch.float16)
    loaded = round(time.perf_counter() - started, 1)
    counts = {
        name: sum(p.numel() for p in model.parameters())
        for name, model in components.items()
        if hasattr(model, "parameters")
    }
    return {
        "file_gb": round(path.stat().st_size / 1e9, 2),
        "write_s": written,
        "load_s": loaded,
        "parameters": counts,
        "unet_in_channels": components["unet"].config.in_channels,
        "tokenizer_2_pad": components["tokenizer_2"].pad_token,
    }


def _cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True
    )
    return round(time.perf_counter() - started, 1), done


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="full-size-") as scratch:
        work = Path(scratch)
        if "--sdxl-only" in sys.argv[1:]:
            print(json.dumps({"sdxl_load": _sdxl_load(work)}))
            return
        sdxl = _sdxl_load(work) if "--sdxl" in sys.argv[1:] else "not run (pass --sdxl)"
        models = work / "models"
        written = _write_models(models)
        sizes_gb = {path.name: round(path.stat().st_size / 1e9, 2) for path in models.rglob("*.*")}
        Image.fromarray(data.astronaut()).save(work / "astronaut.png")
        draw_product_shot("tshirt", size=(384, 512)).image.save(work / "tee.png")
        _, listing = _cli("models", "--models", str(models))
        architectures = {m["name"]: m["architecture"] for m in json.loads(listing.stdout)}
        common = ["--engine", "sd", "--models", str(models), "--steps", "1"]
        common += ["--width", "256", "--height", "256", "--seed", "1"]
        runs = {}
        for name, args in (
            ("tryon", ["tryon", "--person", str(work / "astronaut.png")]),
            ("tryon_normal_checkpoint", ["tryon", "--person", str(work / "astronaut.png")]),
            ("modelshot", ["modelshot"]),
        ):
            out = work / name
            extra = ["--checkpoint", "sd15"] if name == "tryon_normal_checkpoint" else []
            extra += ["--vae", "vae-ft-mse-840000-ema-pruned"] if name == "modelshot" else []
            seconds, done = _cli(
                *args, "--garment", str(work / "tee.png"), "-c", "upper", *common, *extra,
                "--out", str(out),
            )  # fmt: skip
            result = out / "result.png"
            runs[name] = {
                "seconds": seconds,
                "ok": done.returncode == 0 and result.is_file(),
                "size": list(Image.open(result).size) if result.is_file() else None,
                "error": done.stderr.strip().splitlines()[-1] if done.returncode else "",
            }
    print(
        json.dumps(
            {
                "write_s": written,
                "files_gb": sizes_gb,
                "architectures": architectures,
                "runs": runs,
                "sdxl_load": sdxl,
            }
        )
    )


if __name__ == "__main__":
    main()
