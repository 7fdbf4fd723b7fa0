"""Full-size SD 1.5 files in the WebUI's formats run the ``sd`` engine with the shipped configs.

Run from the repository root: ``python bench/full_size_formats.py`` (a few minutes, about 6 GB
of disk in a temporary folder, 12 GB of memory at most). The last stdout line is one JSON object.

Random-weight files of the released sizes and key layouts (tests/model_files.py) are written,
fp16, into a temporary MODELS_DIR under the names people have them —
``checkpoints/sd15-inpainting.safetensors`` and ``checkpoints/sd15.safetensors`` (CompVis
layout, 9 and 4 UNet channels), ``controlnet/control_v11p_sd15_openpose.pth`` and
``…_canny.pth`` (lllyasviel's pickles), ``vae/vae-ft-mse-840000-ema-pruned.safetensors``,
``ipadapter/ip-adapter_sd15.safetensors`` and ``clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K``
``.safetensors`` (so ``tryon`` runs with the IP-Adapter, ``tryon_without_ip_adapter`` at
weight 0) — with
no ``.config`` folders: the architecture comes from the keys, the configs from
``pipelines/configs``, the tokenizer from ``pipelines.clip_tokenizer``. Then the CLI's
``tryon`` and ``modelshot`` run one step at 256 × 256 on them, as a user would. Random weights
paint noise: this proves loading and running at full size, not picture quality.

With ``--sdxl`` (or ``--sdxl-only``) it does the same for SDXL: a full-size SDXL inpainting
checkpoint (Stability's layout, fp16, 6.9 GB) and the two SDXL ControlNets (diffusers single
files, fp16, 2.5 GB each) under the names ``fetch --set sdxl`` gives them, then ``tryon`` and
``modelshot`` at 512 × 512, one step, in bf16 (``--dtype bf16``): in fp32 the UNet, both text
encoders and the two 1.25-billion-parameter ControlNets would need about 24 GB, this
machine's whole memory; bf16 halves that. ``peak_rss_gb`` is the largest child process so far.
"""

import gc
import json
import resource
import shutil
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
    started = time.perf_counter()
    _write_ip_adapter(models, unet_config)
    spent["ip_adapter"] = round(time.perf_counter() - started, 1)
    return spent


def _write_ip_adapter(models: Path, unet_config: dict) -> None:
    """h94's ip-adapter_sd15 (plain, 1024-wide image embeddings) and the ViT-H encoder it
    reads, under ComfyUI's names, at their released sizes."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # only its layers' names and widths are needed
        unet = UNet2DConditionModel.from_config(unet_config)
    adapter = models / "ipadapter" / "ip-adapter_sd15.safetensors"
    mf.write_ip_adapter(adapter, unet, image_embeds=mf.VIT_H["projection"])
    encoder = models / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    mf.write_clip_vision(encoder, **mf.VIT_H)


def _write_sdxl_models(models: Path) -> dict[str, float]:
    """The full-size SDXL files under the starter set's names; seconds spent writing each."""
    spent = {}
    torch.set_default_dtype(torch.float16)  # build in half: the fp32 models would not fit twice
    try:
        started = time.perf_counter()
        path = models / "checkpoints" / "sd_xl_base_1.0_inpainting_0.1.safetensors"
        mf.write_sdxl_checkpoint(path, **mf.sdxl_configs(inpainting=True), dtype=torch.float16)
        spent["checkpoint"] = round(time.perf_counter() - started, 1)
        config = mf.controlnet_config(mf.sdxl_configs()["unet_config"])
        for seed, kind in enumerate(("openpose", "canny")):
            started = time.perf_counter()
            path = models / "controlnet" / f"controlnet-{kind}-sdxl-1.0.safetensors"
            mf.write_diffusers_controlnet(path, config, seed=seed, dtype=torch.float16)
            gc.collect()
            spent[kind] = round(time.perf_counter() - started, 1)
    finally:
        torch.set_default_dtype(torch.float32)
    return spent


def _runs(models: Path, work: Path, size: int, extra_common: list[str]) -> dict:
    """``tryon`` (with the default and, if installed, a normal checkpoint) and ``modelshot``
    through the CLI at ``size``², one step."""
    common = ["--engine", "sd", "--models", str(models), "--steps", "1", "--seed", "1"]
    common += ["--width", str(size), "--height", str(size), "--hires-scale", "1", *extra_common]
    named = {path.stem for path in (models / "checkpoints").iterdir()}
    plans = [("tryon", ["tryon", "--person", str(work / "astronaut.png")], [])]
    if (models / "ipadapter").is_dir():
        plans.append(
            (
                "tryon_without_ip_adapter",
                ["tryon", "--person", str(work / "astronaut.png")],
                ["--ip-adapter-weight", "0"],
            )
        )
    if "sd15" in named:
        plans.append(
            (
                "tryon_normal_checkpoint",
                ["tryon", "--person", str(work / "astronaut.png")],
                ["--checkpoint", "sd15"],
            )
        )
    vae = ["--vae", "vae-ft-mse-840000-ema-pruned"] if "sd15" in named else []
    plans.append(("modelshot", ["modelshot"], vae))
    runs = {}
    for name, args, extra in plans:
        out = work / f"{models.name}-{name}"
        seconds, done = _cli(
            *args, "--garment", str(work / "tee.png"), "-c", "upper", *common, *extra,
            "--out", str(out),
        )  # fmt: skip
        result = out / "result.png"
        runs[name] = {
            "seconds": seconds,
            "ok": done.returncode == 0 and result.is_file(),
            "size": list(Image.open(result).size) if result.is_file() else None,
            "error": _error_of(done),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 1),
        }
    return runs


def _error_of(done: subprocess.CompletedProcess) -> str:
    """The CLI's ``error:`` line, or how the process ended (killed by a signal: -9 is the
    kernel's out-of-memory killer)."""
    if done.returncode == 0:
        return ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return lines[-1] if lines else f"exit status {done.returncode}"


def _listing(models: Path) -> dict:
    _, listing = _cli("models", "--models", str(models))
    return {m["name"]: m["architecture"] for m in json.loads(listing.stdout)}


def _sdxl(work: Path) -> dict:
    models = work / "xl"
    written = _write_sdxl_models(models)
    gc.collect()
    return {
        "write_s": written,
        "files_gb": {p.name: round(p.stat().st_size / 1e9, 2) for p in models.rglob("*.*")},
        "architectures": _listing(models),
        "runs": _runs(models, work, 512, ["--dtype", "bf16"]),
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
        Image.fromarray(data.astronaut()).save(work / "astronaut.png")
        draw_product_shot("tshirt", size=(384, 512)).image.save(work / "tee.png")
        if "--sdxl-only" in sys.argv[1:]:
            print(json.dumps({"sdxl": _sdxl(work)}))
            return
        models = work / "models"
        written = _write_models(models)
        figures = {
            "write_s": written,
            "files_gb": {p.name: round(p.stat().st_size / 1e9, 2) for p in models.rglob("*.*")},
            "architectures": _listing(models),
            "runs": _runs(models, work, 256, []),
        }
        if "--sdxl" in sys.argv[1:]:
            shutil.rmtree(models)  # the disk: the SDXL files are 12 GB
            figures["sdxl"] = _sdxl(work)
        else:
            figures["sdxl"] = "not run (pass --sdxl)"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
