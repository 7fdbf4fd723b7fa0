"""Stage 5: multi-ControlNet Stable Diffusion inpainting, as the WebUI's img2img inpaint runs it.

``Generator`` wraps diffusers' ``StableDiffusionControlNetInpaintPipeline`` with the
[OpenPose, Canny] ControlNets and adds what the WebUI has and diffusers lacks:

- "Inpaint area: Only masked": the mask's box plus padding, grown to the processing size's
  aspect ratio, is cut out of the picture, the mask and every control map, processed at the
  processing size and scaled back (diffusers' own ``padding_mask_crop`` refuses several
  control images);
- paste-back through the feathered mask, so every pixel where the mask is 0 is the input's,
  with the generated area's colours matched to the input's;
- per-unit control modes (sd-webui-controlnet's "soft injection" and "CFG injection");
- LoRAs from ``<lora:name:weight>`` tags, kept loaded as adapters and switched per run;
- WebUI-weighted prompt embeddings, per-step progress with a cheap latent preview, and cancel.

Only workers import this module: it imports torch and diffusers.
"""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import MultiControlNetModel
from PIL import Image

from . import ip_adapter
from .errors import (
    GenerationCancelled,
    GenerationError,
    InvalidInputError,
    is_out_of_memory,
)
from .loading import load_pipeline, load_state_dict
from .params import CONTROL_MODES, CONTROL_NAMES, LATENT_UPSCALE_MODES, GenerationParams
from .prompt_encoding import check_prompt_length, encode_prompt_pair, encode_prompt_pair_xl
from .prompts import check_prompt_characters, parse_prompt
from .reference import attached, encode_reference, reference_picture, vae_upcast
from .registry import ModelEntry, extension_hash, model_hash, resolve_model, scan_models
from .request import RuntimeConfig
from .samplers import make_scheduler
from .selection import EngineModels

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)

# sd-webui-controlnet's soft injection: residual k of n is scaled by SOFT_BASE ** (n - 1 - k),
# so the shallow, detail-level residuals steer least.
SOFT_BASE = 0.825
# The WebUI's "cheap approximation" of the SD1.x VAE decoder: latent channels → RGB in [-1, 1].
LATENT_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
# LoRA adapters kept loaded in a cached UNet; the least recently used beyond this are dropped.
MAX_LORAS = 8
# Colour matching never stretches a channel's spread further than this either way.
MAX_SPREAD_RATIO = 1.5


@dataclass(frozen=True)
class StepReport:
    """One finished sampling step of one pass: ``preview`` is set every few steps."""

    step: int
    total: int
    preview: Image.Image | None = None


# --- the inpaint area ----------------------------------------------------------------------------


def inpaint_region(
    mask: Image.Image, size: tuple[int, int], padding: int, only_masked: bool
) -> Box:
    """The part of the picture a pass processes, as the WebUI's "Inpaint area" chooses it.

    "Only masked": the mask's bounding box plus ``padding`` pixels, grown (within the picture)
    towards the processing ``size``'s aspect ratio so the crop is not distorted. Otherwise the
    whole picture. Raises ``InvalidInputError`` for an empty mask: there would be nothing to paint.
    """
    bounds = mask.getbbox()  # Pillow's C scan: a hundred times faster than numpy's nonzero
    if bounds is None:
        raise InvalidInputError("mask", "the mask is empty: there is nothing to repaint")
    width, height = mask.size
    if not only_masked:
        return (0, 0, width, height)
    left, top = max(0, bounds[0] - padding), max(0, bounds[1] - padding)
    right, bottom = min(width, bounds[2] + padding), min(height, bounds[3] + padding)
    aspect = size[0] / size[1]
    box_width, box_height = right - left, bottom - top
    if box_width / box_height < aspect:
        left, right = _grow(left, right, round(box_height * aspect), width)
    else:
        top, bottom = _grow(top, bottom, round(box_width / aspect), height)
    return (left, top, right, bottom)


def _grow(low: int, high: int, wanted: int, limit: int) -> tuple[int, int]:
    """Widen [low, high) to ``wanted`` about its centre, shifted to stay inside [0, limit)."""
    wanted = min(wanted, limit)
    low -= (wanted - (high - low)) // 2
    low = min(max(0, low), limit - wanted)
    return low, low + wanted


def crop_resize(image: Image.Image, box: Box, size: tuple[int, int]) -> Image.Image:
    """``image`` cut to ``box`` and resized to the processing ``size``."""
    crop = image.crop(box)
    return crop if crop.size == size else crop.resize(size, Image.LANCZOS)


def paste_back(
    base: Image.Image,
    generated: Image.Image,
    box: Box,
    mask: Image.Image,
    *,
    color_correction: bool,
) -> Image.Image:
    """``generated`` (the processed crop) scaled into ``box`` of ``base`` through ``mask``.

    Every pixel where ``mask`` is 0 is exactly ``base``'s; elsewhere the feathered mask blends.
    With ``color_correction`` the generated pixels' Lab mean and spread inside the mask are
    matched to ``base``'s there, which removes the colour cast a VAE round trip and the
    sampler leave, without undoing what was painted.
    """
    left, top, right, bottom = box
    region = np.asarray(base.convert("RGB").crop(box))
    painted = np.asarray(
        generated.convert("RGB").resize((right - left, bottom - top), Image.LANCZOS)
    )
    weight = np.asarray(mask.crop(box), np.float32) / 255.0
    if color_correction:
        painted = match_colours(painted, region, weight)
    blended = painted.astype(np.float32) * weight[:, :, None] + region * (1 - weight[:, :, None])
    blended = np.round(blended).astype(np.uint8)
    blended[weight == 0] = region[weight == 0]
    result = base.convert("RGB")
    result.paste(Image.fromarray(blended, "RGB"), (left, top))
    return result


def match_colours(source: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``source`` (RGB) with its weighted Lab mean and spread moved to ``reference``'s."""
    total = float(weight.sum())
    if total < 1:
        return source
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)
    # Statistics over the weighted pixels only, as matrix products (float64 sums).
    inside = weight > 0
    w = (weight[inside] / total).astype(np.float64)
    src_mean, src_std = _weighted_stats(src[inside], w)
    ref_mean, ref_std = _weighted_stats(ref[inside], w)
    ratio = np.clip(ref_std / src_std, 1 / MAX_SPREAD_RATIO, MAX_SPREAD_RATIO)
    matched = np.clip((src - src_mean) * ratio + ref_mean, 0, 255).astype(np.uint8)
    return cv2.cvtColor(matched, cv2.COLOR_LAB2RGB)


def _weighted_stats(pixels: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = pixels.astype(np.float64)
    mean = w @ values
    spread = np.sqrt(np.maximum(w @ (values * values) - mean * mean, 0.0)) + 1e-3
    return mean.astype(np.float32), spread.astype(np.float32)


def latent_preview(latents: torch.Tensor) -> Image.Image:
    """A rough RGB picture of the first latent (1/8 of the size), without running the VAE."""
    coefficients = torch.tensor(LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].float().cpu(), coefficients)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


# --- the pipeline --------------------------------------------------------------------------------


class ControlModeNets(MultiControlNetModel):
    """A MultiControlNetModel that applies each unit's WebUI control mode.

    "My prompt is more important" scales residual k of n by ``SOFT_BASE ** (n - 1 - k)``;
    "ControlNet is more important" does that and also leaves the unconditional half of a
    classifier-free-guidance batch without control, so the control counts fully in the
    guidance direction (the idea of diffusers' guess mode, per unit). A unit whose scale is 0
    at this step (outside its guidance start/end) is not run at all.
    """

    def set_modes(self, modes: tuple[str, ...], cfg_batch: bool) -> None:
        self.modes = modes
        self.cfg_batch = cfg_batch

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        controlnet_cond,
        conditioning_scale,
        **options,
    ):
        options["return_dict"] = False
        total = None
        for image, scale, net, mode in zip(
            controlnet_cond, conditioning_scale, self.nets, self.modes, strict=True
        ):
            if scale == 0:
                continue
            down, mid = net(
                sample,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                controlnet_cond=image,
                conditioning_scale=scale,
                **options,
            )
            residuals = self._apply_mode([*down, mid], mode)
            total = (
                residuals
                if total is None
                else [a + b for a, b in zip(total, residuals, strict=True)]
            )
        if total is None:  # no unit active at this step: zero residuals change nothing
            down, mid = self.nets[0](
                sample,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                controlnet_cond=controlnet_cond[0],
                conditioning_scale=0.0,
                **options,
            )
            total = [*down, mid]
        return total[:-1], total[-1]

    def _apply_mode(self, residuals: list[torch.Tensor], mode: str) -> list[torch.Tensor]:
        if mode == CONTROL_MODES[0]:
            return residuals
        count = len(residuals)
        residuals = [r * SOFT_BASE ** (count - 1 - k) for k, r in enumerate(residuals)]
        if mode == CONTROL_MODES[2] and self.cfg_batch:
            half = residuals[0].shape[0] // 2
            residuals = [torch.cat([torch.zeros_like(r[:half]), r[half:]]) for r in residuals]
        return residuals


class Generator:
    """A loaded inpainting pipeline with its models, ready for any number of passes.

    Creating one loads nothing that is already cached in this process (see ``pipelines.cache``);
    the pipeline object itself is cheap and new each time.
    """

    def __init__(self, models: EngineModels, runtime: RuntimeConfig):
        self.models = models
        self.runtime = runtime
        self.device = runtime.torch_device()
        self.dtype = runtime.torch_dtype()
        pipe = load_pipeline(
            models.checkpoint,
            list(models.controlnets),
            vae=models.vae,
            dtype=self.dtype,
            manifest=runtime.manifest,
        )
        nets = (
            pipe.controlnet.nets
            if isinstance(pipe.controlnet, MultiControlNetModel)
            else [pipe.controlnet]
        )
        pipe.register_modules(controlnet=ControlModeNets(list(nets)))
        pipe.set_progress_bar_config(disable=True)
        # Before offloading is set up, so that the encoder is offloaded with the rest.
        self._ip_attached = models.ip_adapter is not None
        if self._ip_attached:
            ip_adapter.attach(pipe, models.ip_adapter, dtype=self.dtype, manifest=runtime.manifest)
        self.pipe = pipe
        try:
            self._place(runtime)
        except BaseException:
            self.close()  # the cached UNet must not keep this run's IP-Adapter
            raise
        # The prompts' embeddings, reused by every image and pass of a run (one Generator is
        # one run: its LoRAs, which change the text encoder, are set before painting).
        self._encoded: dict[tuple, tuple] = {}

    def _place(self, runtime: RuntimeConfig) -> None:
        """Move the pipeline to its device (or set up offloading) and set VAE tiling."""
        pipe = self.pipe
        if runtime.offload and self.device.type != "cpu":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if runtime.vae_tiling:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()

    @contextlib.contextmanager
    def tiled_vae(self):
        """The VAE decodes (and encodes) in tiles inside the block when on a GPU, so that a
        hires pass's big picture fits a small one; as the runtime says outside it."""
        vae = self.pipe.vae
        if self.device.type != "cuda" or self.runtime.vae_tiling:
            yield
            return
        vae.enable_tiling()
        try:
            yield
        finally:
            vae.disable_tiling()

    @property
    def uses_ip_adapter(self) -> bool:
        """Whether an IP-Adapter is loaded: every ``paint`` then needs the garment's picture."""
        return self._ip_attached

    def garment_picture(self, cutout: Image.Image | None) -> Image.Image | None:
        """The garment's cut-out (RGBA) as the IP-Adapter's encoder reads it: square, at its
        input size, on grey; None without an IP-Adapter (or a cut-out)."""
        if not self.uses_ip_adapter or cutout is None:
            return None
        side = self.pipe.image_encoder.config.image_size
        return reference_picture(cutout, (side, side))

    def close(self) -> None:
        """Take the IP-Adapter back out of the cached UNet; call once the run is over."""
        if self._ip_attached:
            self.pipe.unload_ip_adapter()
            self._ip_attached = False

    def hashes(self) -> dict[str, str]:
        """WebUI short hashes of the checkpoint and the VAE; the ControlNets' and the
        IP-Adapter's as the ControlNet extension writes them (``extension_hash``)."""
        cache_file = self.runtime.hash_cache
        found = {"checkpoint": model_hash(self.models.checkpoint, cache_file=cache_file)}
        for kind, net in zip(CONTROL_NAMES, self.models.controlnets, strict=True):
            found[kind] = extension_hash(net)  # as the extension names its models
        if self.models.vae is not None:
            found["vae"] = model_hash(self.models.vae, cache_file=cache_file)
        if self.models.ip_adapter is not None:
            found["ip_adapter"] = extension_hash(self.models.ip_adapter.adapter)
        return found

    def use_loras(self, loras: tuple[tuple[str, float], ...]) -> dict[str, str]:
        """Activate exactly these (name, weight) LoRAs; returns {name: WebUI hash}.

        Each LoRA file is loaded once into the cached UNet (and text encoder) as a named
        adapter; later runs only switch adapters and weights, never reload the checkpoint.
        """
        pipe = self.pipe
        loaded = set(pipe.get_list_adapters().get("unet", [])) if _has_adapters(pipe) else set()
        if not loras:
            if loaded:
                pipe.disable_lora()
                self._encoded.clear()
            return {}
        models_dir = self.models.checkpoint.models_dir
        entries = scan_models(models_dir) if models_dir else []
        names, weights, hashes = [], [], {}
        for name, weight in loras:
            entry = resolve_model(entries, "loras", name)
            short = model_hash(entry, cache_file=self.runtime.hash_cache)
            adapter = f"lora_{short}"
            if adapter not in loaded:
                state = load_state_dict(
                    entry.path, models_dir=entry.models_dir, manifest=self.runtime.manifest
                )
                self._require_lora_family(entry, state)
                try:
                    pipe.load_lora_weights(state, adapter_name=adapter)
                except (ValueError, KeyError, RuntimeError) as error:
                    raise InvalidInputError(
                        "lora", f"{entry.filename} is not a LoRA for this checkpoint: {error}"
                    ) from None
                loaded.add(adapter)
            names.append(adapter)
            weights.append(weight)
            hashes[entry.name] = short
        _forget_old_adapters(pipe, keep=names)
        self._encoded.clear()  # LoRAs change the text encoder
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
        return hashes

    def check_prompts(self, prompt: str, negative_prompt: str) -> None:
        """Refuse, naming "prompt" or "negative_prompt", a prompt over the token cap
        (``prompts.MAX_PROMPT_TOKENS``); cheap, so it runs before any LoRA is loaded or any
        text encoded."""
        check_prompt_length(prompt, self.pipe.tokenizer, field="prompt")
        check_prompt_length(negative_prompt, self.pipe.tokenizer, field="negative_prompt")

    @property
    def is_sdxl(self) -> bool:
        """Whether the checkpoint is SDXL's (two text encoders, pooled conditioning)."""
        return getattr(self.pipe, "text_encoder_2", None) is not None

    def _require_lora_family(self, entry: ModelEntry, state: dict) -> None:
        """An SD 1.5 LoRA on an SDXL checkpoint (or the reverse) is refused by name; keys of no
        known layout are left to diffusers, which says what it could not place."""
        from .architectures import FAMILY_NAMES, detect, shapes_of

        try:
            found = detect(shapes_of(state), shown=entry.filename)
        except InvalidInputError:
            return
        family = "sdxl" if self.is_sdxl else "sd15"
        if found.kind == "loras" and found.family not in (None, family):
            raise InvalidInputError(
                "lora",
                f"{entry.filename} is an {found.label}; the checkpoint "
                f"{self.models.checkpoint.filename} is {FAMILY_NAMES[family]}",
            )

    def _embeddings(self, prompt: str, negative_prompt: str, clip_skip: int) -> dict:
        """The pipeline's embedding arguments for these prompts (cached for the run)."""
        key = (prompt, negative_prompt, clip_skip)
        if key not in self._encoded:
            # Before parsing: a prompt of megabytes is refused by its length alone. The token
            # cap is encode_prompt_pair's own (token_windows): no second tokenizing here.
            check_prompt_characters(len(prompt), field="prompt")
            check_prompt_characters(len(negative_prompt), field="negative_prompt")
            parsed = parse_prompt(prompt), parse_prompt(negative_prompt)
            pipe = self.pipe
            if self.is_sdxl:
                # SDXL always takes the penultimate layers: the WebUI ignores clip skip there.
                cond, uncond, pooled, negative_pooled = encode_prompt_pair_xl(
                    *parsed,
                    (pipe.tokenizer, pipe.tokenizer_2),
                    (pipe.text_encoder, pipe.text_encoder_2),
                )
                extra = {
                    "pooled_prompt_embeds": pooled,
                    "negative_pooled_prompt_embeds": negative_pooled,
                }
            else:
                cond, uncond = encode_prompt_pair(
                    *parsed, pipe.tokenizer, pipe.text_encoder, clip_skip=clip_skip
                )
                extra = {}
            self._encoded[key] = {"prompt_embeds": cond, "negative_prompt_embeds": uncond, **extra}
        return self._encoded[key]

    def paint(
        self,
        *,
        image: Image.Image,
        mask: Image.Image,
        controls: tuple[Image.Image, ...],
        prompt: str,
        negative_prompt: str,
        params: GenerationParams,
        strength: float,
        seed: int,
        reference: Image.Image | None = None,
        garment: Image.Image | None = None,
        size: tuple[int, int] | None = None,
        steps: int | None = None,
        latent: bool = False,
        on_step: Callable[[StepReport], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Any:
        """One image at the processing size (``size``, else ``params``'): ``image``, ``mask``
        and ``controls`` already are. ``steps`` replaces ``params.steps`` (a hires pass's).
        With ``latent`` the result is its latents (a 1 × C × h × w tensor), not decoded.

        With a ``reference`` picture (the garment's) and ``params.reference`` enabled, the
        reference unit steers the pass (``pipelines.reference``); with an IP-Adapter loaded,
        the ``garment`` picture (square, see ``garment_picture``) feeds it."""
        pipe = self.pipe
        pipe.scheduler = make_scheduler(params.sampler, pipe.scheduler.config)
        embeddings = self._embeddings(prompt, negative_prompt, params.clip_skip)
        device = pipe._execution_device
        units = params.controlnets
        pipe.controlnet.set_modes(
            tuple(u.control_mode for u in units), cfg_batch=params.cfg_scale > 1
        )
        every = self.runtime.preview_every

        def step_end(pipeline, index, timestep, tensors):
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled("cancelled")
            if on_step is not None:
                done, total = index + 1, pipeline.num_timesteps
                show = every and (done % every == 0) and done < total
                on_step(
                    StepReport(done, total, latent_preview(tensors["latents"]) if show else None)
                )
            return {}

        if should_cancel is not None and should_cancel():
            raise GenerationCancelled("cancelled")
        size = size or (params.width, params.height)
        extra = {}
        if self.uses_ip_adapter:
            if garment is None:
                raise GenerationError("the IP-Adapter is loaded but no garment picture was given")
            pipe.set_ip_adapter_scale(params.ip_adapter.weight)
            extra["ip_adapter_image"] = garment
        steering = contextlib.nullcontext()
        if reference is not None and params.reference.enabled:
            encoded = encode_reference(pipe, reference, size, seed)
            steering = attached(pipe, encoded, params.reference, cfg=params.cfg_scale > 1)
        try:
            with steering:
                result = pipe(
                    **{name: value.to(device, self.dtype) for name, value in embeddings.items()},
                    image=image,
                    mask_image=mask,
                    control_image=list(controls),
                    width=size[0],
                    height=size[1],
                    strength=strength,
                    num_inference_steps=schedule_steps(steps or params.steps, strength),
                    guidance_scale=params.cfg_scale,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    controlnet_conditioning_scale=[u.weight for u in units],
                    control_guidance_start=[u.guidance_start for u in units],
                    control_guidance_end=[u.guidance_end for u in units],
                    callback_on_step_end=step_end,
                    output_type="latent" if latent else "pil",
                    **extra,
                )
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise  # the caller retries once with offload
            raise GenerationError(f"the diffusion pass failed: {error}") from error
        return result.images[:1] if latent else result.images[0]

    def upscale_latents(self, latents: torch.Tensor, size: tuple[int, int], upscaler: str):
        """``latents`` enlarged to ``size`` (pixels) in the WebUI's latent ``upscaler`` mode,
        decoded: the picture the hires pass starts from (re-encoding it gives back about the
        same latents, so this is the WebUI's latent hires fix through the pipeline's door)."""
        mode, antialias = LATENT_UPSCALE_MODES[upscaler]
        factor = self.pipe.vae_scale_factor
        scaled = torch.nn.functional.interpolate(
            latents, size=(size[1] // factor, size[0] // factor), mode=mode, antialias=antialias
        )
        vae = self.pipe.vae
        with torch.no_grad(), vae_upcast(vae):
            latents = scaled.to(vae.dtype) / vae.config.scaling_factor
            pixels = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(pixels, output_type="pil")[0]


def _has_adapters(pipe: Any) -> bool:
    return bool(getattr(pipe.unet, "peft_config", None))


def _forget_old_adapters(pipe: Any, *, keep: list[str]) -> None:
    loaded = pipe.get_list_adapters().get("unet", [])
    surplus = len(loaded) - MAX_LORAS
    if surplus > 0:
        stale = [name for name in loaded if name not in keep][:surplus]
        if stale:
            pipe.delete_adapters(stale)


@dataclass(frozen=True)
class PassResult:
    image: Image.Image  # the full picture, pasted back
    processed: Image.Image  # what the pipeline returned, at the processing size
    box: Box


def inpaint_pass(
    generator: Generator,
    *,
    image: Image.Image,
    mask: Image.Image,
    controls: tuple[Image.Image, ...],
    prompt: str,
    negative_prompt: str,
    params: GenerationParams,
    strength: float,
    seed: int,
    color_correction: bool,
    reference: Image.Image | None = None,
    garment: Image.Image | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PassResult:
    """Repaint ``mask`` of ``image`` (full size) guided by ``controls`` (full size) and, when
    given, the ``reference`` picture (already at the processing size) and the ``garment``
    picture for the IP-Adapter.

    The inpaint area is cut out, processed at ``params.width`` × ``params.height`` and pasted
    back; the result has ``image``'s size and equals it wherever ``mask`` is 0.
    """
    size = (params.width, params.height)
    for control in controls:
        if control.size != image.size:
            raise InvalidInputError("controls", "every control map must have the picture's size")
    box = inpaint_region(mask, size, params.inpaint_full_res_padding, params.inpaint_full_res)
    phases = _Phases(on_step, params)
    latent = params.hires_scale > 1 and params.hr_upscaler in LATENT_UPSCALE_MODES
    processed = generator.paint(
        image=crop_resize(image.convert("RGB"), box, size),
        mask=crop_resize(mask, box, size),
        controls=tuple(crop_resize(control.convert("RGB"), box, size) for control in controls),
        prompt=prompt,
        negative_prompt=negative_prompt,
        params=params,
        strength=strength,
        seed=seed,
        reference=reference,
        garment=garment,
        latent=latent,
        on_step=phases.first,
        should_cancel=should_cancel,
    )
    if params.hires_scale > 1:
        # The WebUI's "Hires. fix": the first pass upscaled (its pixels, or with a latent
        # upscaler its latents), then painted again at a low strength at the larger size, its
        # mask and maps cut from the full-size ones.
        hires = params.hires_size()
        with generator.tiled_vae():
            if latent:
                upscaled = generator.upscale_latents(processed, hires, params.hr_upscaler)
            else:
                resample = Image.LANCZOS if params.hr_upscaler == "Lanczos" else Image.NEAREST
                upscaled = processed.resize(hires, resample)
            processed = generator.paint(
                image=upscaled,
                mask=crop_resize(mask, box, hires),
                controls=tuple(crop_resize(c.convert("RGB"), box, hires) for c in controls),
                prompt=prompt,
                negative_prompt=negative_prompt,
                params=params,
                strength=params.hr_denoising_strength,
                seed=seed,
                reference=reference.resize(hires, Image.LANCZOS) if reference else None,
                garment=garment,
                size=hires,
                steps=params.hr_second_pass_steps or params.steps,
                on_step=phases.second,
                should_cancel=should_cancel,
            )
    pasted = paste_back(image, processed, box, mask, color_correction=color_correction)
    return PassResult(pasted, processed, box)


class _Phases:
    """Step reports of a pass with a hires pass as one count: the first pass's steps, then the
    second's after them (whose number is known once it starts; estimated before)."""

    def __init__(self, on_step: Callable[[StepReport], None] | None, params: GenerationParams):
        self.on_step = on_step
        hires = params.hires_scale > 1
        steps = params.hr_second_pass_steps or params.steps
        self.later = max(1, int(steps * params.hr_denoising_strength)) if hires else 0
        self.done = 0

    def first(self, step: StepReport) -> None:
        self.done = step.total
        if self.on_step is not None:
            self.on_step(replace(step, total=step.total + self.later))

    def second(self, step: StepReport) -> None:
        if self.on_step is not None:
            total = self.done + step.total
            self.on_step(replace(step, step=self.done + step.step, total=total))


def schedule_steps(steps: int, strength: float) -> int:
    """The schedule's length for ``steps`` at ``strength``: diffusers samples only the last
    ``int(steps × strength)`` of it, which is none for ``--steps 1`` at 0.75. The WebUI still
    runs one step there; a schedule long enough for one does the same."""
    return max(steps, math.ceil(1 / strength)) if strength > 0 else steps


def free_gpu_memory() -> None:
    """Drop cached models and let CUDA return its memory (before a retry with offload)."""
    import gc

    from . import cache

    cache.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
