"""Reference attention: the garment's own picture steers what is painted inside its edges.

The WebUI ControlNet extension's ``reference_only``, ``reference_adain`` and
``reference_adain+attn`` preprocessors, for our inpaint pipelines (SD 1.5 and SDXL), with no
extra weights. At each sampling step inside the unit's guidance window, before the UNet's own
call, the reference picture's latents, noised to that step's timestep, run through the same
UNet (the *write* pass, batched for classifier-free guidance as the extension does: one extra
UNet call per step). Its self-attention inputs are kept, layer by layer, and the main pass's
self-attention then attends to its own tokens *and* the reference's (``reference_only``); its
resnet outputs' per-channel means and spreads are kept, and the main pass's are moved to them
(AdaIN, ``reference_adain``). ``weight`` says how many layers take part (1: all of them; the
widest first for attention, the middle of the UNet first for AdaIN, as the extension orders
them). ``style_fidelity`` (the extension's ``threshold_a``) keeps the unconditional half of
the batch free of the reference, so guidance pushes towards it: 0 blends nothing back, 1
leaves the unconditional half entirely without it.

It is installed on a pipeline's UNet as attention processors (each wraps the processor that
was there) and module hooks, for one pipeline call, and removed afterwards (``attached``).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .params import ReferenceUnit

EPSILON = 1e-6
# The reference picture's background: mid grey, which pulls no colour towards itself.
BACKGROUND = (128, 128, 128)


@dataclass
class _State:
    """What the write pass left for the read pass, and which pass is running."""

    attention: bool
    adain: bool
    weight: float
    style_fidelity: float
    mode: str = "off"  # off, write, read
    uncond: slice | None = None  # the batch's unconditional half, with CFG
    bank: dict[int, torch.Tensor] = field(default_factory=dict)
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    unet_calls: int = 0

    def mix(self, with_reference: torch.Tensor, plain: Any) -> torch.Tensor:
        """The style-fidelity blend: the unconditional rows as ``plain()`` gives them, by
        ``style_fidelity``; the conditional rows with the reference."""
        if self.uncond is None or self.style_fidelity <= 0:
            return with_reference
        faithful = with_reference.clone()
        faithful[self.uncond] = plain(self.uncond)
        return self.style_fidelity * faithful + (1 - self.style_fidelity) * with_reference


class ReferenceAttnProcessor:
    """A self-attention processor that keeps (write) or also attends to (read) the reference's
    tokens; otherwise the processor it wraps, unchanged."""

    def __init__(self, inner: Any, state: _State, key: int, order: float):
        self.inner = inner
        self.state = state
        self.key = key
        self.order = order  # this layer takes part while order < weight

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        state = self.state
        used = state.attention and self.order < state.weight and encoder_hidden_states is None
        if used and state.mode == "write":
            state.bank[self.key] = hidden_states.detach()
        if not used or state.mode != "read" or self.key not in state.bank:
            return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        reference = state.bank[self.key].to(hidden_states.dtype)
        joint = torch.cat([hidden_states, reference], dim=1)
        with_reference = self.inner(attn, hidden_states, joint, *args, **kwargs)
        return state.mix(
            with_reference,
            lambda rows: self.inner(attn, hidden_states[rows], None, *args, **kwargs),
        )


def _adain_hook(state: _State, key: int, order: float):
    """A forward hook on one resnet: keeps its output's statistics (write) or moves the
    output's to them (read)."""

    def hook(module, inputs, output):
        if not state.adain or order > state.weight or state.mode == "off":
            return None
        var, mean = torch.var_mean(output.float(), dim=(2, 3), keepdim=True, correction=0)
        std = (var + EPSILON).sqrt()
        if state.mode == "write":
            state.stats[key] = (mean, std)
            return None
        if key not in state.stats:
            return None
        ref_mean, ref_std = state.stats[key]
        moved = (((output.float() - mean) / std) * ref_std + ref_mean).to(output.dtype)
        return state.mix(moved, lambda rows: output[rows])

    return hook


def _attention_layers(unet) -> list[tuple[str, float]]:
    """The UNet's self-attention processors' names, each with its order: the widest layers
    first (order 0), as the extension sorts them."""
    names = [name for name in unet.attn_processors if name.endswith("attn1.processor")]
    modules = dict(unet.named_modules())

    def width(name: str) -> int:
        return modules[name.removesuffix(".processor")].to_q.in_features

    ranked = sorted(names, key=lambda name: -width(name))
    return [(name, index / len(ranked)) for index, name in enumerate(ranked)]


def _resnets(unet) -> Iterator[tuple[Any, float]]:
    """Every resnet of the UNet with its AdaIN order: the middle block 0, the down blocks from
    the deepest, the up blocks from the first, as the extension weighs its GroupNorm layers."""
    yield from ((resnet, 0.0) for resnet in unet.mid_block.resnets)
    downs = unet.down_blocks
    for index, block in enumerate(downs):
        order = 1.0 - index / len(downs)
        yield from ((resnet, order) for resnet in block.resnets)
    ups = unet.up_blocks
    for index, block in enumerate(ups):
        yield from ((resnet, index / len(ups)) for resnet in block.resnets)


@dataclass(frozen=True)
class ReferenceInput:
    """The reference for one pass: its latents (VAE-encoded, scaled) and the noise that
    brings them to each step's timestep."""

    latents: torch.Tensor
    noise: torch.Tensor


@contextmanager
def vae_upcast(vae: Any) -> Iterator[Any]:
    """``vae`` in float32 inside the block when it is an fp16 VAE that overflows in fp16
    (SDXL's: ``force_upcast``), as diffusers' pipelines do; as it was afterwards."""
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae
    finally:
        if upcast:
            vae.to(torch.float16)


def encode_reference(pipe, picture, size: tuple[int, int], seed: int) -> ReferenceInput:
    """``picture`` (a PIL image) at ``size`` through the pipeline's VAE, with seeded noise."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(picture, height=size[1], width=size[0])
    with torch.no_grad(), vae_upcast(vae):
        encoded = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    latents = encoded * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(seed))
    return ReferenceInput(latents, noise.to(latents.device, latents.dtype))


def reference_picture(cutout: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The garment's cut-out (RGBA) cropped to the garment, fitted into ``size`` and centred
    on a grey canvas: the picture the write pass sees."""
    bounds = cutout.getchannel("A").getbbox() or (0, 0, *cutout.size)
    garment = cutout.crop(bounds)
    scale = min(size[0] / garment.width, size[1] / garment.height)
    fitted = garment.resize(
        (max(1, round(garment.width * scale)), max(1, round(garment.height * scale))),
        Image.LANCZOS,
    )
    canvas = Image.new("RGB", size, BACKGROUND)
    offset = ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2)
    canvas.paste(fitted, offset, fitted)
    return canvas


@contextmanager
def attached(pipe, reference: ReferenceInput, unit: ReferenceUnit, *, cfg: bool):
    """``unit``'s reference control on ``pipe``'s UNet for the calls made inside the block;
    yields the state, whose ``unet_calls`` counts every UNet call (write passes included)."""
    unet = pipe.unet
    state = _State(
        attention=unit.module in ("reference_only", "reference_adain+attn"),
        adain=unit.module in ("reference_adain", "reference_adain+attn"),
        weight=unit.weight,
        style_fidelity=unit.style_fidelity,
    )
    original = dict(unet.attn_processors)
    wrapped = dict(original)
    for key, (name, order) in enumerate(_attention_layers(unet)):
        wrapped[name] = ReferenceAttnProcessor(original[name], state, key, order)
    handles = [
        resnet.register_forward_hook(_adain_hook(state, key, order))
        for key, (resnet, order) in enumerate(_resnets(unet))
    ]
    guidance = (unit.guidance_start, unit.guidance_end)
    write_first = _write_first(pipe, reference, state, guidance, cfg)
    handles.append(unet.register_forward_pre_hook(write_first, with_kwargs=True))
    unet.set_attn_processor(wrapped)
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
        unet.set_attn_processor(original)


def _write_first(pipe, reference: ReferenceInput, state: _State, guidance, cfg: bool):
    """The UNet's pre-hook: before each main call inside the guidance window, the write pass on
    the reference noised to the same timestep; then the main call reads."""
    calls = {"main": 0}

    def hook(unet, args, kwargs):
        state.unet_calls += 1
        if state.mode == "write":
            return None  # the write pass itself
        index = calls["main"]
        calls["main"] += 1
        total = max(1, pipe.num_timesteps)
        state.mode, state.bank, state.stats = "off", {}, {}
        if not guidance[0] <= index / total < guidance[1]:
            return None
        # diffusers' pipelines call unet(sample, t, encoder_hidden_states=..., ...).
        sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
        state.uncond = slice(0, sample.shape[0] // 2) if cfg else None
        state.mode = "write"
        try:
            unet(
                _reference_sample(pipe, reference, sample, timestep),
                timestep,
                encoder_hidden_states=kwargs["encoder_hidden_states"],
                timestep_cond=kwargs.get("timestep_cond"),
                added_cond_kwargs=kwargs.get("added_cond_kwargs"),
                cross_attention_kwargs=kwargs.get("cross_attention_kwargs"),
                return_dict=False,
            )  # no ControlNet residuals: the reference is read as it is
        finally:
            state.mode = "read"
        return None

    return hook


def _reference_sample(pipe, reference: ReferenceInput, sample: torch.Tensor, timestep):
    """The write pass's UNet input: the reference latents noised to ``timestep`` and scaled as
    the scheduler scales the main input, batched like ``sample``; for a 9-channel inpainting
    UNet with an empty mask (nothing to repaint) and the reference itself as the known part."""
    scheduler = pipe.scheduler
    t = timestep if torch.is_tensor(timestep) else torch.tensor(timestep)
    t_batch = t.reshape(1).to(reference.latents.device)
    noised = scheduler.add_noise(reference.latents, reference.noise, t_batch)
    noised = scheduler.scale_model_input(noised, t)
    batch = sample.shape[0]
    noised = noised.to(sample.device, sample.dtype).repeat(batch, 1, 1, 1)
    if sample.shape[1] == noised.shape[1]:
        return noised
    known = reference.latents.to(sample.device, sample.dtype).repeat(batch, 1, 1, 1)
    mask = torch.zeros_like(noised[:, :1])
    return torch.cat([noised, mask, known], dim=1)
