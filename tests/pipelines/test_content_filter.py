"""The content filter: loading diffusers' safety checker from MODELS_DIR, and its hooks on a
run's input photo and results.

The checker here is a tiny random-weight one built by the test; its decisions are made certain
by its concept thresholds: it flags a picture when similarity - threshold > 0, and a cosine
similarity lies in [-1, 1], so thresholds of -10 flag everything and +10 nothing.
"""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from pipelines import generate
from pipelines.content_filter import SAFETY_FOLDER, ContentFiltered, load_content_filter
from pipelines.errors import InvalidInputError, ModelNotFoundError, PipelineError
from pipelines.params import GenerationParams
from pipelines.tryon import TryOnRequest, run

FAST = {"steps": 2, "width": 128, "height": 192, "seed": 7}
FLAG_EVERYTHING = -10.0
FLAG_NOTHING = 10.0


def make_safety_checker(folder: Path, threshold: float) -> Path:
    """A tiny StableDiffusionSafetyChecker with every concept threshold at ``threshold``, saved
    with its CLIP image processor as the folder ``load_content_filter`` reads."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    tiny = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = CLIPConfig(
        # Token ids inside the small vocabulary (CLIP's own are 49406 and 49407).
        text_config={
            **tiny,
            "num_attention_heads": 4,
            "vocab_size": 99,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        vision_config={**tiny, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    checker.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkers(tmp_path_factory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("checkers")
    return {t: make_safety_checker(root / str(t), t) for t in (FLAG_EVERYTHING, FLAG_NOTHING)}


def _models_with(tmp_path: Path, checker: Path, tiny_kit: Path | None = None) -> Path:
    models = tmp_path / "models"
    models.mkdir(parents=True)
    shutil.copytree(checker, models / SAFETY_FOLDER)
    if tiny_kit is not None:
        (models / "tiny").symlink_to(tiny_kit)
    return models


def _photo_request(photo, tee, **params) -> TryOnRequest:
    return TryOnRequest(
        "photo",
        (tee,),
        person_photo=photo,
        params=GenerationParams(**{**FAST, **params}),
        engine="tiny",
    )


def _shot_request(tee, engine="tiny") -> TryOnRequest:
    return TryOnRequest(
        "model_shot", (tee,), scene="beach", params=GenerationParams(**FAST), engine=engine
    )


def test_no_folder_means_no_filter(tmp_path):
    assert load_content_filter(tmp_path) is None


def test_the_thresholds_decide_what_is_flagged(tmp_path, checkers, no_network):
    pictures = [Image.new("RGB", (300, 200), "red"), Image.new("L", (40, 90))]
    everything = load_content_filter(_models_with(tmp_path / "a", checkers[FLAG_EVERYTHING]))
    nothing = load_content_filter(_models_with(tmp_path / "b", checkers[FLAG_NOTHING]))

    assert everything.flags(pictures) == [True, True]
    assert nothing.flags(pictures) == [False, False]
    assert nothing.flags([]) == []


def test_the_checker_is_loaded_once_while_its_file_stays_the_same(tmp_path, checkers):
    models = _models_with(tmp_path, checkers[FLAG_NOTHING])
    assert load_content_filter(models) is load_content_filter(models)


@pytest.mark.parametrize("present", [("config.json",), ("config.json", "pytorch_model.bin")])
def test_a_folder_without_safetensors_weights_is_an_error_not_no_filter(
    tmp_path, checkers, present
):
    folder = tmp_path / SAFETY_FOLDER
    folder.mkdir()
    for name in present:
        shutil.copy(checkers[FLAG_NOTHING] / "config.json", folder / name)

    with pytest.raises(ModelNotFoundError, match=r"lacks model\.safetensors"):
        load_content_filter(tmp_path)


def test_a_link_out_of_the_models_folder_is_refused(tmp_path, checkers):
    models = tmp_path / "models"
    models.mkdir()
    (models / SAFETY_FOLDER).symlink_to(checkers[FLAG_NOTHING])

    with pytest.raises(InvalidInputError, match="outside the models folder"):
        load_content_filter(models)


def test_with_a_manifest_the_weights_must_be_listed(tmp_path, checkers):
    models = _models_with(tmp_path, checkers[FLAG_NOTHING])
    manifest = tmp_path / "models.sha256"
    manifest.write_text("# nothing trusted yet\n")

    with pytest.raises(PipelineError, match="not in the models manifest"):
        load_content_filter(models, manifest=manifest)


def test_a_flagged_photo_stops_the_run_before_anything_is_painted(
    tmp_path, checkers, tiny_kit, photo, tee, monkeypatch, no_network
):
    models = _models_with(tmp_path, checkers[FLAG_EVERYTHING], tiny_kit)

    def no_diffusion(*args, **kwargs):
        raise AssertionError("diffusion ran on a refused photo")

    monkeypatch.setattr(generate, "Generator", no_diffusion)
    with pytest.raises(ContentFiltered, match="refused this photo"):
        run(_photo_request(photo, tee), models_dir=models)


def test_flagged_results_are_withheld_and_all_withheld_fails(
    tmp_path, checkers, tiny_kit, tee, no_network
):
    models = _models_with(tmp_path, checkers[FLAG_EVERYTHING], tiny_kit)

    # A model shot has no input photo, so only its results meet the filter.
    with pytest.raises(ContentFiltered, match="withheld by the content filter"):
        run(_shot_request(tee), models_dir=models)


def test_results_the_filter_passes_are_returned(
    tmp_path, checkers, tiny_kit, photo, tee, no_network
):
    models = _models_with(tmp_path, checkers[FLAG_NOTHING], tiny_kit)

    output = run(_photo_request(photo, tee), models_dir=models)

    assert len(output.images) == 1 and output.withheld == 0
    assert {"filter_input", "filter_output"} <= set(output.timings_ms)


def test_only_the_flagged_pictures_of_a_batch_are_withheld(
    tmp_path, tiny_kit, photo, tee, monkeypatch, no_network
):
    """A stand-in filter (any object with ``flags``) that flags the second picture of a batch."""

    class SecondResult:
        calls: list[int] = []

        def flags(self, images):
            self.calls.append(len(images))
            return [index == 1 for index in range(len(images))] if len(self.calls) > 1 else [False]

    screen = SecondResult()
    monkeypatch.setattr("pipelines.tryon.load_content_filter", lambda *a, **k: screen)
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_kit)

    output = run(_photo_request(photo, tee, batch_size=3), models_dir=models)

    assert screen.calls == [1, 3]
    assert [image.seed for image in output.images] == [FAST["seed"], FAST["seed"] + 2]
    assert output.withheld == 1


def test_the_runtime_can_turn_the_filter_off(tmp_path, checkers, tiny_kit, tee, no_network):
    models = _models_with(tmp_path, checkers[FLAG_EVERYTHING], tiny_kit)
    runtime = generate.RuntimeConfig(content_filter=False)

    output = run(_shot_request(tee, engine="preview"), models_dir=models, runtime=runtime)

    assert len(output.images) == 1 and output.withheld == 0
