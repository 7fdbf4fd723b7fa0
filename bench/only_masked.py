"""What "Inpaint area: Only masked" saves: one SD1.5 denoising step on the crop vs the whole photo.

Run from the repository root: ``python bench/only_masked.py`` (CPU, fp32; a few minutes). The
last stdout line is one JSON object.

The models have the real SD1.5 architecture with random weights (nothing is downloaded): the
inpainting UNet (9 input channels, 768-wide text) and two full-size ControlNets (OpenPose +
Canny, as the product runs them), combined by the product's own ``ControlModeNets``. A step is
what every sampling step costs: both ControlNets (on the control maps at pixel size) and the
UNet, batch 2 for classifier-free guidance, on a (2, 77, 768) text embedding. The VAE, which
runs once per picture rather than once per step, is left out.

- ``only_masked_s``: a step at the size of a 512×768 crop around the torso of a 1024×1536
  photo, processed at its own size so the detail is the same (latents 64×96);
- ``whole_s``: a step on the whole photo at its native size (latents 128×192).

``speedup`` = whole / only-masked (target >= 2.5). The crop has a quarter of the pixels, and
self-attention grows with the square of the pixel count, so the speedup exceeds 4. After a
warm-up at a small size, the one whole-image step runs between two crop steps, whose mean is
``only_masked_s``. ``cpu_speedup`` is the same ratio in this process's CPU seconds, which
other processes on the machine disturb less than wall time. ``peak_rss_gib`` is the process's
peak memory (models included).
"""

import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from pipelines.generate import ControlModeNets
from pipelines.params import CONTROL_MODES

PHOTO_SIZE = (1024, 1536)
CROP_SIZE = (512, 768)
LATENT_SCALE = 8
TEXT_SHAPE = (2, 77, 768)
WARM_UP_SIZE = (64, 64)


def _models() -> tuple[UNet2DConditionModel, ControlModeNets]:
    """SD1.5's inpainting UNet and two ControlNets, diffusers' default SD1.5 configs, random."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, in_channels=9, cross_attention_dim=768)
    nets = ControlModeNets([ControlNetModel(cross_attention_dim=768) for _ in range(2)])
    nets.set_modes((CONTROL_MODES[0],) * 2, cfg_batch=True)
    return unet.eval(), nets.eval()


def _step(unet, nets, size: tuple[int, int]):
    """A function running one guided step at pixel ``size``: ControlNets, then the UNet."""
    width, height = size
    latents = torch.randn(2, 4, height // LATENT_SCALE, width // LATENT_SCALE)
    inpaint_latents = torch.randn(2, 5, height // LATENT_SCALE, width // LATENT_SCALE)
    controls = [torch.rand(2, 3, height, width) for _ in range(2)]
    text = torch.randn(*TEXT_SHAPE)
    timestep = torch.tensor(500)

    def run():
        down, mid = nets(latents, timestep, text, controls, [1.0, 0.7])
        return unet(
            torch.cat([latents, inpaint_latents], dim=1),
            timestep,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]

    return run


def _timed(run, label: str) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label} step: {wall:.1f} s ({cpu:.1f} s of CPU)", file=sys.stderr)
    return wall, cpu


def main() -> None:
    started = time.perf_counter()
    with torch.inference_mode():
        unet, nets = _models()
        print(f"models built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        _step(unet, nets, WARM_UP_SIZE)()  # one-time costs (thread pools, kernels) out of the way
        crop_step, whole_step = _step(unet, nets, CROP_SIZE), _step(unet, nets, PHOTO_SIZE)
        # The whole-image step is bracketed by two crop steps, so a machine that slows down
        # or speeds up during the run moves both sides alike.
        crop = [_timed(crop_step, "only-masked")]
        whole = _timed(whole_step, "whole-image")
        crop.append(_timed(crop_step, "only-masked"))
    only_masked = [statistics.mean(times) for times in zip(*crop, strict=True)]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "photo": "x".join(map(str, PHOTO_SIZE)),
                "crop": "x".join(map(str, CROP_SIZE)),
                "latents_only_masked": f"{CROP_SIZE[0] // 8}x{CROP_SIZE[1] // 8}",
                "latents_whole": f"{PHOTO_SIZE[0] // 8}x{PHOTO_SIZE[1] // 8}",
                "controlnets": 2,
                "batch": TEXT_SHAPE[0],
                "dtype": "fp32",
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "only_masked_s": round(only_masked[0], 2),
                "whole_s": round(whole[0], 2),
                "speedup": round(whole[0] / only_masked[0], 2),
                "cpu_speedup": round(whole[1] / only_masked[1], 2),
                "peak_rss_gib": round(peak_kib / 2**20, 2),
                "total_s": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
