"""The WebUI sampler table: every name builds a working diffusers scheduler, right options."""

import subprocess
import sys

import pytest

from pipelines.errors import InvalidInputError
from pipelines.samplers import (
    SAMPLER_NAMES,
    SAMPLERS,
    SCHEDULE_TYPES,
    make_scheduler,
    resolve_sampler,
)

SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

REQUIRED = [
    "Euler a",
    "Euler",
    "LMS",
    "LMS Karras",
    "Heun",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "DPM2 a Karras",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM++ 2S a",
    "DPM++ 2S a Karras",
    "DDIM",
    "UniPC",
    "LCM",
]


def test_the_table_covers_the_webui_samplers():
    assert set(REQUIRED) <= set(SAMPLER_NAMES)
    assert list(SAMPLERS) == SAMPLER_NAMES
    assert SAMPLER_NAMES[:2] == ["DPM++ 2M", "DPM++ SDE"]  # WebUI 1.10's display order


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_builds_and_sets_timesteps(name):
    spec = SAMPLERS[name]
    scheduler = make_scheduler(spec, SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(20)

    assert type(scheduler).__name__ == spec.scheduler_class_name
    assert len(scheduler.timesteps) >= 20
    for option, value in spec.options.items():
        assert scheduler.config[option] == value, option
    # The checkpoint's own noise schedule survives the switch.
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == 0.012


@pytest.mark.parametrize(
    ("name", "class_name", "expected"),
    [
        ("Euler a", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
        ("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("LMS Karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}),
        ("Heun", "HeunDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM2 Karras", "KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
        ("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
        (
            "DPM++ 2M Karras",
            "DPMSolverMultistepScheduler",
            {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"},
        ),
        ("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        (
            "DPM++ 2M SDE Karras",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        ),
        ("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
        ("DPM++ 2S a Karras", "DPMSolverSinglestepScheduler", {"solver_order": 2}),
        ("DDIM", "DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1}),
        ("UniPC", "UniPCMultistepScheduler", {"solver_type": "bh1", "solver_order": 3}),
        ("LCM", "LCMScheduler", {}),
    ],
)
def test_expected_scheduler_and_options(name, class_name, expected):
    scheduler = make_scheduler(resolve_sampler(name), SD15_SCHEDULER_CONFIG)
    assert type(scheduler).__name__ == class_name
    for option, value in expected.items():
        assert scheduler.config[option] == value, option


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if n not in ("DDIM", "LCM")])
def test_sampling_starts_at_the_training_sigma_max_like_the_webui(name):
    scheduler = make_scheduler(SAMPLERS[name], SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(20)
    # SD 1.5's own "leading" spacing would start at t=951 (sigma 11.0), Karras included.
    assert float(scheduler.timesteps[0]) == pytest.approx(999)
    assert float(scheduler.sigmas[0]) == pytest.approx(14.6146, rel=1e-4)


def test_ddim_keeps_the_webui_uniform_discretization():
    scheduler = make_scheduler(SAMPLERS["DDIM"], SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(20)
    # The WebUI's DDIM steps are range(0, 1000, 50) + 1.
    assert [int(t) for t in scheduler.timesteps] == list(range(951, 0, -50))


def test_karras_changes_the_sigmas():
    uniform = make_scheduler(resolve_sampler("Euler"), SD15_SCHEDULER_CONFIG)
    karras = make_scheduler(resolve_sampler("Euler", "Karras"), SD15_SCHEDULER_CONFIG)
    uniform.set_timesteps(20)
    karras.set_timesteps(20)
    # Same end points (the training schedule's sigma_max), different spacing in between.
    assert float(uniform.sigmas[0]) == pytest.approx(float(karras.sigmas[0]), rel=1e-3)
    assert float(uniform.sigmas[10]) != pytest.approx(float(karras.sigmas[10]), rel=1e-2)


def test_uniform_starts_at_the_last_training_timestep_like_k_diffusion():
    scheduler = make_scheduler(resolve_sampler("Euler"), SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(20)
    # k-diffusion's get_sigmas(n) starts at t=999; SD 1.5's "leading" spacing would start at 951.
    assert float(scheduler.timesteps[0]) == pytest.approx(999)


@pytest.mark.parametrize(
    ("old", "sampler", "schedule"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ 2M SDE Karras", "DPM++ 2M SDE", "Karras"),
        ("DPM++ SDE Karras", "DPM++ SDE", "Karras"),
        ("DPM++ 2S a Karras", "DPM++ 2S a", "Karras"),
        ("LMS Karras", "LMS", "Karras"),
        ("DPM2 Karras", "DPM2", "Karras"),
        ("DPM2 a Karras", "DPM2 a", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
    ],
)
def test_old_and_new_spellings_give_the_same_spec(old, sampler, schedule):
    spec = resolve_sampler(old)
    assert spec == resolve_sampler(sampler, schedule)
    assert spec == resolve_sampler(old, "Automatic")
    assert spec == resolve_sampler(old, schedule)
    assert (spec.name, spec.schedule_type) == (sampler, schedule)


def test_automatic_is_the_webui_1_10_default_of_the_sampler():
    assert resolve_sampler("DPM++ 2M").schedule_type == "Karras"
    assert resolve_sampler("DPM++ 2M SDE").schedule_type == "Exponential"
    assert resolve_sampler("Euler a", "Automatic").schedule_type == "Uniform"
    assert resolve_sampler("DPM++ 2M", "Uniform").options == {"timestep_spacing": "linspace"}
    ddim = resolve_sampler("DDIM")
    assert (ddim.name, ddim.schedule_type) == ("DDIM", "Automatic")


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("k_euler_a", "Euler a"),
        ("k_euler_ancestral", "Euler a"),
        ("k_dpmpp_2m", "DPM++ 2M"),
        ("K_DPMPP_2M_KA", "DPM++ 2M Karras"),
        ("k_dpmpp_2m_sde_ka", "DPM++ 2M SDE Karras"),
        ("ddim", "DDIM"),
        ("euler a", "Euler a"),
        ("Euler Karras", None),
    ],
)
def test_webui_aliases(spelling, expected):
    if expected is None:
        spec = resolve_sampler(spelling)
        assert (spec.name, spec.schedule_type) == ("Euler", "Karras")
    else:
        assert resolve_sampler(spelling) == SAMPLERS[expected]


@pytest.mark.parametrize(
    ("schedule", "option"),
    [
        ("Exponential", "use_exponential_sigmas"),
        ("exponential", "use_exponential_sigmas"),
        ("Beta", "use_beta_sigmas"),
        ("SGM Uniform", "timestep_spacing"),
        ("sgm_uniform", "timestep_spacing"),
        ("Karras", "use_karras_sigmas"),
    ],
)
def test_schedule_types_reach_the_scheduler(schedule, option):
    spec = resolve_sampler("DPM++ 2M", schedule)
    scheduler = make_scheduler(spec, SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(20)
    expected = "trailing" if option == "timestep_spacing" else True
    assert scheduler.config[option] == expected
    assert spec.schedule_type in SCHEDULE_TYPES


def test_unknown_sampler_names_the_field_and_lists_the_names():
    with pytest.raises(InvalidInputError) as caught:
        resolve_sampler("Euler z")
    assert caught.value.argument == "sampler_name"
    assert "unknown sampler 'Euler z'" in str(caught.value)
    assert "DPM++ 2M Karras" in str(caught.value)


def test_unknown_schedule_type_names_the_field():
    with pytest.raises(InvalidInputError) as caught:
        resolve_sampler("Euler", "Cosine")
    assert caught.value.argument == "scheduler"
    assert "unknown schedule type 'Cosine'" in str(caught.value)
    assert "Karras" in str(caught.value)


def test_webui_schedule_type_without_diffusers_equivalent_is_refused():
    with pytest.raises(InvalidInputError, match="no diffusers equivalent") as caught:
        resolve_sampler("Euler", "Align Your Steps")
    assert caught.value.argument == "scheduler"


@pytest.mark.parametrize(("name", "schedule"), [("Euler a", "Karras"), ("DDIM", "Exponential")])
def test_combination_the_scheduler_lacks_is_refused(name, schedule):
    with pytest.raises(InvalidInputError, match="cannot use schedule type") as caught:
        resolve_sampler(name, schedule)
    assert caught.value.argument == "scheduler"


def test_contradicting_schedule_types_are_refused():
    with pytest.raises(InvalidInputError, match="contradicts"):
        resolve_sampler("DPM++ 2M Karras", "Exponential")


def test_approximations_say_why():
    for name in ("DPM++ 2S a", "DPM++ 2S a Karras", "DPM2"):
        spec = SAMPLERS[name]
        assert spec.approximate
        assert spec.note
    assert not SAMPLERS["DPM++ 2M Karras"].approximate
    assert not SAMPLERS["DPM++ SDE"].approximate


def test_specs_are_immutable():
    spec = SAMPLERS["DPM++ 2M Karras"]
    with pytest.raises(TypeError):
        spec.options["use_karras_sigmas"] = False  # type: ignore[index]
    hash(spec)


def test_import_stays_torch_free():
    code = (
        "import sys, pipelines.samplers as s; s.resolve_sampler('Euler a'); "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
