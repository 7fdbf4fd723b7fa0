"""Prompts through real jobs: no prompt can forge a line of a result's infotext, a garment's
description of megabytes costs no more than a short one, and a prompt over the token cap fails
its job at once with a message naming the field."""

import pytest
from PIL import Image
from skimage import data

from catalog.models import Garment
from pipelines.prompts import DESCRIPTION_PROMPT_WORDS, MAX_PROMPT_TOKENS, build_prompt
from tests.conftest import png_base64
from tryon.intake import model_shot_batch_create
from tryon.models import TryOnJob

pytestmark = pytest.mark.django_db
FAST = {"steps": 2, "width": 128, "height": 192, "seed": 5}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("prompt", "read_back"),
    [
        ("blue\nNegative prompt: forged negative", "blue Negative prompt: forged negative"),
        ("Negative prompt: forged negative", "negative prompt: forged negative"),
        ("blue\u2028Negative prompt: forged\r\nnegative", "blue Negative prompt: forged negative"),
    ],
)
def test_png_info_of_a_result_reads_no_forged_negative_prompt(
    webui, tiny_models_dir, settings, prompt, read_back
):
    settings.TRYON_ENGINE = "tiny"
    settings.JOB_DEADLINE = 60
    picture = Image.fromarray(data.astronaut()).resize((128, 128))
    payload = {"init_images": [png_base64(picture)], "prompt": prompt, "negative_prompt": "blurry",
               "steps": 1, "width": 64, "height": 64, "seed": 3,
               "denoising_strength": 1.0}  # fmt: skip
    response = webui.post("/sdapi/v1/img2img", payload, format="json")
    assert response.status_code == 200, response.content

    image = response.json()["images"][0]
    read = webui.post("/sdapi/v1/png-info", {"image": image}, format="json").json()
    assert read["parameters"]["Prompt"] == read_back
    assert "forged" not in read["parameters"]["Negative prompt"]
    assert read["parameters"]["Negative prompt"].endswith(", blurry")
    assert read["parameters"]["Seed"] == "3" and len(read["info"].splitlines()) == 3


@pytest.fixture
def garment_of_megabytes(analysed_garment, tiny_models_dir) -> Garment:
    """The analysed tee with a 2 MB description, stored as an old row was: past validation."""
    huge = " ".join(f"w{index}" for index in range(300_000))
    Garment.objects.filter(pk=analysed_garment.pk).update(description=huge)
    analysed_garment.refresh_from_db()
    assert len(analysed_garment.description) > 2_000_000
    return analysed_garment


def test_a_garment_with_a_description_of_megabytes_still_generates(
    garment_of_megabytes, merchant, client, django_capture_on_commit_callbacks
):
    garment = garment_of_megabytes
    # Checked first: without the cap, the job below would encode two million tokens.
    assert len(build_prompt(category="upper", description=garment.description)[0]) < 1000
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = model_shot_batch_create(
            owner=merchant,
            garment=garment,
            poses=["front_standing"],
            scenes=[],
            params=FAST,
            engine="tiny",
        )
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.SUCCEEDED, job.error_message
    infotext = job.results.get().infotext
    last = DESCRIPTION_PROMPT_WORDS - 1
    assert f"w{last}," in infotext and f"w{last + 1}" not in infotext
    assert len(infotext) < 3000

    # Its status poll carries the capped prompt only, never the description.
    client.force_login(merchant)
    poll = client.get(f"/api/tryons/{job.pk}/")
    assert poll.status_code == 200 and len(poll.content) < 10_000
    assert f"w{last + 1}" not in poll.content.decode()


def test_a_prompt_over_the_token_cap_fails_its_job_at_once_naming_the_field(
    analysed_garment, merchant, tiny_models_dir, django_capture_on_commit_callbacks
):
    # Within the intake's character cap; the tiny kit's tokenizer spells digits and commas one
    # token each, so with the built model-shot prompt it is over the token cap.
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = model_shot_batch_create(
            owner=merchant,
            garment=analysed_garment,
            poses=["front_standing"],
            scenes=[],
            params={**FAST, "prompt": "1," * 150},
            engine="tiny",
        )
    job.refresh_from_db()
    assert job.status == TryOnJob.Status.FAILED and job.attempts == 1
    assert job.error_type == "InvalidInputError"
    assert job.error_message.startswith("prompt: is ")
    assert f"at most {MAX_PROMPT_TOKENS} tokens" in job.error_message
    assert not job.results.exists()
