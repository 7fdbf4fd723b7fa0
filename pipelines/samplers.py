"""AUTOMATIC1111 WebUI sampler names mapped to diffusers schedulers, in one table.

People bring sampler names from the WebUI in two spellings: the old single name ("DPM++ 2M
Karras", WebUI < 1.9) and the newer pair of a sampler plus a schedule type ("DPM++ 2M" +
"Karras"). Both resolve to the same :class:`SamplerSpec`.

"Automatic" (or no schedule type) means the sampler's own default as in WebUI 1.10: Karras for
DPM++ 2M, DPM++ SDE, DPM++ 2S a, DPM2 and DPM2 a; Exponential for DPM++ 2M SDE (Heun); Uniform for
Euler, Euler a, LMS and Heun; the scheduler's own timesteps for DDIM, UniPC and LCM. So a bare
"DPM++ 2M" is Karras, as in the current WebUI; pass "Uniform" for the pre-1.9 meaning. Infotext is
always written with the concrete schedule type, so it means the same in every WebUI version.

This module imports neither torch nor diffusers at import time: the web process uses it to
validate requests.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InvalidInputError

AUTOMATIC = "Automatic"
# The WebUI's schedule types that diffusers can reproduce, in the WebUI's order.
SCHEDULE_TYPES: tuple[str, ...] = (
    AUTOMATIC,
    "Uniform",
    "Karras",
    "Exponential",
    "SGM Uniform",
    "Beta",
)
# The other schedule types the WebUI 1.10 offers: named so their refusal says "not supported"
# rather than "unknown".
_UNSUPPORTED_SCHEDULE_TYPES = (
    "Polyexponential",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Karras Exponential",
)
# The WebUI accepts a schedule type by label, by internal name and by alias (sd_schedulers.py).
_SCHEDULE_TYPE_NAMES = {
    "automatic": AUTOMATIC,
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "sgmuniform": "SGM Uniform",
    "sgm uniform": "SGM Uniform",
    "beta": "Beta",
}

# Each schedule type as diffusers config options. Uniform is k-diffusion's get_sigmas(n), evenly
# spaced timesteps from the last training step down to 0: diffusers' "linspace" spacing, not the
# "leading" spacing SD 1.5's own config asks for. SGM Uniform leaves out the final timestep, which
# is diffusers' "trailing" spacing.
_SCHEDULE_OPTIONS: dict[str, dict[str, Any]] = {
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Beta": {"use_beta_sigmas": True},
}

# diffusers takes sigma_max for these from the first spaced timestep, so SD 1.5's "leading"
# spacing would start them at t=951 (sigma 11.0) where the WebUI starts at the training schedule's
# sigma_max (t=999, sigma 14.6); "linspace" spacing starts at t=999.
_SIGMA_SCHEDULES = frozenset({"Karras", "Exponential", "Beta"})

# The options each scheduler class accepts in diffusers 0.42.1 (checked against its __init__).
_SIGMA_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
_SCHEDULER_OPTIONS: dict[str, frozenset[str]] = {
    "EulerAncestralDiscreteScheduler": frozenset({"timestep_spacing"}),
    "EulerDiscreteScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "LMSDiscreteScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "HeunDiscreteScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "KDPM2DiscreteScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "KDPM2AncestralDiscreteScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "DPMSolverMultistepScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "DPMSolverSDEScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    # No timestep_spacing: its timesteps always come from a linspace over the sigmas.
    "DPMSolverSinglestepScheduler": frozenset(_SIGMA_OPTIONS),
    "DDIMScheduler": frozenset({"timestep_spacing"}),
    "UniPCMultistepScheduler": frozenset({"timestep_spacing", *_SIGMA_OPTIONS}),
    "LCMScheduler": frozenset({"timestep_spacing"}),
}


@dataclass(frozen=True)
class SamplerSpec:
    """A WebUI sampler resolved to a diffusers scheduler.

    ``name`` is the WebUI sampler without the schedule type ("DPM++ 2M"); ``schedule_type`` is
    the WebUI label of the schedule ("Karras", or "Automatic" for samplers that keep their own
    timesteps); ``options`` are the keyword arguments given to ``from_config``; ``approximate``
    is true when diffusers has no exact equivalent, and ``note`` says how it differs.
    """

    name: str
    scheduler_class_name: str
    options: Mapping[str, Any] = field(hash=False)
    schedule_type: str
    approximate: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        # A frozen spec must not change through its options dict either.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class _Sampler:
    """One WebUI sampler before a schedule type is chosen."""

    scheduler_class_name: str
    options: dict[str, Any]
    default_schedule: str
    aliases: tuple[str, ...] = ()
    approximate: bool = False
    note: str = ""


_SDE_NOTE = (
    "diffusers draws fresh Gaussian noise each step where the WebUI uses a Brownian tree, so a "
    "seed gives a different picture"
)
# The single-step solver's own default (lower_order_final=False) cannot end on sigma 0, and it
# switches itself over with a warning on every set_timesteps; asking for it up front is quiet.
# The WebUI 1.10 list (sd_samplers_kdiffusion.py, sd_samplers_timesteps.py, sd_samplers_lcm.py)
# in display order, with its aliases; samplers diffusers cannot run (DPM fast, DPM adaptive,
# Restart, DPM++ 3M SDE, PLMS, DDIM CFG++) are left out.
_BASE_SAMPLERS: dict[str, _Sampler] = {
    "DPM++ 2M": _Sampler("DPMSolverMultistepScheduler", {}, "Karras", ("k_dpmpp_2m",)),
    "DPM++ SDE": _Sampler(
        # diffusers' port of k-diffusion's sample_dpmpp_sde, including its Brownian-tree noise
        # (torchsde) instead of fresh noise at every step.
        "DPMSolverSDEScheduler",
        {},
        "Karras",
        ("k_dpmpp_sde",),
    ),
    "DPM++ 2M SDE": _Sampler(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        "Exponential",
        ("k_dpmpp_2m_sde",),
        note=_SDE_NOTE,
    ),
    "DPM++ 2M SDE Heun": _Sampler(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"},
        "Exponential",
        ("k_dpmpp_2m_sde_heun",),
        note=_SDE_NOTE,
    ),
    "DPM++ 2S a": _Sampler(
        "DPMSolverSinglestepScheduler",
        {"solver_order": 2, "lower_order_final": True},
        "Karras",
        ("k_dpmpp_2s_a",),
        approximate=True,
        note=(
            "diffusers has no ancestral single-step DPM-Solver++; this is the same 2S solver "
            "without the ancestral noise, so it converges where the WebUI's keeps changing"
        ),
    ),
    "Euler a": _Sampler(
        "EulerAncestralDiscreteScheduler", {}, "Uniform", ("k_euler_a", "k_euler_ancestral")
    ),
    "Euler": _Sampler("EulerDiscreteScheduler", {}, "Uniform", ("k_euler",)),
    "LMS": _Sampler("LMSDiscreteScheduler", {}, "Uniform", ("k_lms",)),
    "Heun": _Sampler("HeunDiscreteScheduler", {}, "Uniform", ("k_heun",)),
    "DPM2": _Sampler(
        "KDPM2DiscreteScheduler",
        {},
        "Karras",
        ("k_dpm_2",),
        approximate=True,
        note="the WebUI drops the next-to-last sigma for DPM2; diffusers keeps it",
    ),
    "DPM2 a": _Sampler(
        "KDPM2AncestralDiscreteScheduler",
        {},
        "Karras",
        ("k_dpm_2_a",),
        approximate=True,
        note="the WebUI drops the next-to-last sigma for DPM2 a; diffusers keeps it",
    ),
    # The timestep samplers ignore the WebUI's schedule type; their own spacing is the default.
    "DDIM": _Sampler("DDIMScheduler", {}, AUTOMATIC, ("ddim",)),
    "UniPC": _Sampler(
        "UniPCMultistepScheduler",
        # The WebUI's UniPC defaults (shared_options.py): variant bh1, order 3, and "time_uniform"
        # steps from the last training timestep down, which is diffusers' "linspace".
        {"solver_type": "bh1", "solver_order": 3, "timestep_spacing": "linspace"},
        AUTOMATIC,
        ("unipc",),
    ),
    "LCM": _Sampler(
        "LCMScheduler",
        {},
        AUTOMATIC,
        ("k_lcm",),
        approximate=True,
        note=(
            "the WebUI runs LCM on k-diffusion's uniform sigmas; diffusers' LCMScheduler picks "
            "timesteps from its 50-step origin schedule"
        ),
    ),
}

# The WebUI < 1.9 single names of a sampler with a schedule type, in the order of WebUI 1.8's
# list, with their aliases.
_LEGACY_NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "LMS Karras": ("LMS", "Karras", ("k_lms_ka",)),
    "DPM2 Karras": ("DPM2", "Karras", ("k_dpm_2_ka",)),
    "DPM2 a Karras": ("DPM2 a", "Karras", ("k_dpm_2_a_ka",)),
    "DPM++ 2S a Karras": ("DPM++ 2S a", "Karras", ("k_dpmpp_2s_a_ka",)),
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras", ("k_dpmpp_2m_ka",)),
    "DPM++ SDE Karras": ("DPM++ SDE", "Karras", ("k_dpmpp_sde_ka",)),
    "DPM++ 2M SDE Karras": ("DPM++ 2M SDE", "Karras", ("k_dpmpp_2m_sde_ka",)),
    "DPM++ 2M SDE Exponential": ("DPM++ 2M SDE", "Exponential", ("k_dpmpp_2m_sde_exp",)),
    "DPM++ 2M SDE Heun Karras": ("DPM++ 2M SDE Heun", "Karras", ("k_dpmpp_2m_sde_heun_ka",)),
    "DPM++ 2M SDE Heun Exponential": (
        "DPM++ 2M SDE Heun",
        "Exponential",
        ("k_dpmpp_2m_sde_heun_exp",),
    ),
}

SAMPLER_NAMES: list[str] = [*_BASE_SAMPLERS, *_LEGACY_NAMES]


def _schedule_label(schedule_type: str | None) -> str:
    """The WebUI label of a schedule type given by label, internal name or alias."""
    if schedule_type is None:
        return AUTOMATIC
    if not isinstance(schedule_type, str):
        raise InvalidInputError(
            "scheduler", f"must be a schedule type's name, got {schedule_type!r}"
        )
    label = _SCHEDULE_TYPE_NAMES.get(schedule_type.strip().lower())
    if label is not None:
        return label
    if schedule_type in _UNSUPPORTED_SCHEDULE_TYPES:
        raise InvalidInputError(
            "scheduler",
            f"schedule type {schedule_type!r} has no diffusers equivalent; "
            f"available: {', '.join(SCHEDULE_TYPES)}",
        )
    raise InvalidInputError(
        "scheduler",
        f"unknown schedule type {schedule_type!r}; available: {', '.join(SCHEDULE_TYPES)}",
    )


def _build_spec(name: str, schedule_type: str) -> SamplerSpec:
    """The spec of base sampler ``name`` with a schedule label ("Automatic" picks the default)."""
    sampler = _BASE_SAMPLERS[name]
    if schedule_type == AUTOMATIC:
        schedule_type = sampler.default_schedule
    schedule_options = _SCHEDULE_OPTIONS.get(schedule_type, {})
    accepted = _SCHEDULER_OPTIONS[sampler.scheduler_class_name]
    if schedule_type in _SIGMA_SCHEDULES and "timestep_spacing" in accepted:
        schedule_options = {**schedule_options, "timestep_spacing": "linspace"}
    refused = sorted(set(schedule_options) - accepted)
    if refused:
        supported = [
            label for label, options in _SCHEDULE_OPTIONS.items() if set(options) <= accepted
        ]
        raise InvalidInputError(
            "scheduler",
            f"sampler {name!r} cannot use schedule type {schedule_type!r} "
            f"({sampler.scheduler_class_name} has no {', '.join(refused)}); "
            f"available for it: {', '.join([AUTOMATIC, *supported])}",
        )
    return SamplerSpec(
        name=name,
        scheduler_class_name=sampler.scheduler_class_name,
        options={**sampler.options, **schedule_options},
        schedule_type=schedule_type,
        approximate=sampler.approximate,
        note=sampler.note,
    )


def _lookup_table() -> dict[str, tuple[str, str]]:
    """Every accepted spelling, lowercased, → (base sampler, schedule label)."""
    table: dict[str, tuple[str, str]] = {}
    for name, sampler in _BASE_SAMPLERS.items():
        for spelling in (name, *sampler.aliases):
            table[spelling.lower()] = (name, AUTOMATIC)
    for name, (base, schedule, aliases) in _LEGACY_NAMES.items():
        for spelling in (name, *aliases):
            table[spelling.lower()] = (base, schedule)
    return table


_LOOKUP = _lookup_table()


def _split_name(name: str) -> tuple[str, str] | None:
    """(base sampler, schedule label) for a name or alias, as the WebUI matches it.

    Exact names first, then any case and the WebUI's aliases (its samplers_map is lowercased),
    then a name ending in " <schedule type>" ("Euler Karras"), which WebUI 1.10 splits off.
    """
    found = _LOOKUP.get(name.strip().lower())
    if found is not None:
        return found
    base, _, suffix = name.strip().rpartition(" ")
    label = _SCHEDULE_TYPE_NAMES.get(suffix.lower())
    if base and label is not None and base.lower() in _LOOKUP:
        base_name, base_schedule = _LOOKUP[base.lower()]
        if base_schedule == AUTOMATIC:
            return base_name, label
    return None


def resolve_sampler(name: str, schedule_type: str | None = None) -> SamplerSpec:
    """The spec of a WebUI sampler, in the old ("DPM++ 2M Karras") or new spelling.

    ``schedule_type`` None or "Automatic" keeps the sampler's default; a schedule type that
    contradicts the one in an old-style name is refused rather than one of them being ignored.
    Raises InvalidInputError naming "sampler_name" or "scheduler".
    """
    found = _split_name(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidInputError(
            "sampler_name", f"unknown sampler {name!r}; available: {', '.join(SAMPLER_NAMES)}"
        )
    base, name_schedule = found
    asked_schedule = _schedule_label(schedule_type)
    if AUTOMATIC not in (name_schedule, asked_schedule) and name_schedule != asked_schedule:
        raise InvalidInputError(
            "scheduler",
            f"sampler {name!r} already names schedule type {name_schedule!r}, "
            f"which contradicts {schedule_type!r}",
        )
    chosen = asked_schedule if name_schedule == AUTOMATIC else name_schedule
    return _build_spec(base, chosen)


def _table() -> dict[str, SamplerSpec]:
    return {name: resolve_sampler(name) for name in SAMPLER_NAMES}


SAMPLERS: MappingProxyType[str, SamplerSpec] = MappingProxyType(_table())


def make_scheduler(spec: SamplerSpec, base_config: dict[str, Any]) -> Any:
    """A diffusers scheduler for ``spec``, built on a checkpoint's own scheduler config.

    The checkpoint's config brings its betas and prediction type; the spec's options override
    only what the sampler changes.
    """
    import diffusers

    scheduler_class = getattr(diffusers, spec.scheduler_class_name)
    return scheduler_class.from_config(base_config, **spec.options)


def webui_sampler_names() -> list[str]:
    """The samplers as the WebUI >= 1.9 lists them (schedule types apart): "DPM++ 2M", ..."""
    return list(_BASE_SAMPLERS)


def sampler_aliases(name: str) -> tuple[str, ...]:
    """The WebUI's internal aliases of sampler ``name`` ("k_dpmpp_2m", ...)."""
    return _BASE_SAMPLERS[name].aliases


# The WebUI's ``/sdapi/v1/schedulers`` fields of each schedule type offered here (its
# sd_schedulers.py: internal name, rho and whether k-diffusion needs the inner model).
_SCHEDULER_LISTING = {
    AUTOMATIC: ("automatic", None, -1.0, False),
    "Uniform": ("uniform", None, -1.0, True),
    "Karras": ("karras", None, 7.0, False),
    "Exponential": ("exponential", None, -1.0, False),
    "SGM Uniform": ("sgm_uniform", ["SGMUniform"], -1.0, True),
    "Beta": ("beta", None, -1.0, True),
}


def webui_schedulers() -> list[dict[str, Any]]:
    """The schedule types as the WebUI >= 1.9 lists them: name, label, aliases, default_rho,
    need_inner_model."""
    return [
        {
            "name": name,
            "label": label,
            "aliases": aliases,
            "default_rho": rho,
            "need_inner_model": inner,
        }
        for label, (name, aliases, rho, inner) in _SCHEDULER_LISTING.items()
        if label in SCHEDULE_TYPES
    ]
