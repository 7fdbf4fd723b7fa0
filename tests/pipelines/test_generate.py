"""The parts of stage 5 around the diffusers pipeline: inpaint area, paste-back, control modes.

No pipeline runs here (tests/pipelines/test_tryon.py runs the tiny engine end to end).
"""

import cv2
import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, MultiControlNetModel
from PIL import Image, ImageDraw, ImageFilter

from pipelines.errors import InvalidInputError, ModelNotFoundError
from pipelines.generate import (
    SOFT_BASE,
    ControlModeNets,
    crop_resize,
    inpaint_region,
    latent_preview,
    match_colours,
    paste_back,
)
from pipelines.params import CONTROL_MODES, GenerationParams
from pipelines.selection import select_models
from pipelines.tiny import CHECKPOINT, CONTROLNETS

BALANCED, PROMPT_MORE, CONTROL_MORE = CONTROL_MODES


def box_mask(size, box, value=255):
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=value)
    return mask


def noise_picture(size, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


# --- inpaint_region -------------------------------------------------------------------------------


@pytest.mark.parametrize("only_masked", [True, False])
def test_empty_mask_is_refused(only_masked):
    with pytest.raises(InvalidInputError) as caught:
        inpaint_region(Image.new("L", (64, 64), 0), (512, 512), 32, only_masked)
    assert caught.value.argument == "mask"


def test_whole_picture_mode_returns_the_full_box():
    mask = box_mask((300, 200), (10, 20, 30, 40))
    assert inpaint_region(mask, (512, 768), 32, False) == (0, 0, 300, 200)


def contains(outer, inner):
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and outer[3] >= inner[3]
    )


@pytest.mark.parametrize(
    ("picture", "mask_box", "size", "padding"),
    [
        ((1000, 1000), (400, 300, 500, 700), (512, 768), 32),  # tall mask, room all round
        ((1000, 1000), (300, 450, 700, 520), (512, 768), 32),  # wide mask, grown in height
        ((1000, 800), (450, 350, 470, 380), (512, 512), 0),  # no padding
        ((1000, 800), (200, 100, 700, 200), (768, 512), 16),
    ],
)
def test_only_masked_box_holds_mask_and_padding_at_the_aspect(picture, mask_box, size, padding):
    box = inpaint_region(box_mask(picture, mask_box), size, padding, True)
    padded = (
        mask_box[0] - padding,
        mask_box[1] - padding,
        mask_box[2] + padding,
        mask_box[3] + padding,
    )
    assert contains(box, padded)
    assert contains((0, 0, *picture), box)
    width, height = box[2] - box[0], box[3] - box[1]
    assert abs(width - height * size[0] / size[1]) <= 2
    # Grown only as far as the aspect needs: one side is exactly the padded box's.
    assert width == padded[2] - padded[0] or height == padded[3] - padded[1]


def test_only_masked_box_is_centred_on_the_mask_where_there_is_room():
    box = inpaint_region(box_mask((1000, 1000), (400, 300, 500, 700)), (512, 768), 32, True)
    assert box[1] == 268 and box[3] == 732
    assert abs((box[0] + box[2]) / 2 - 450) <= 1


def test_padding_is_cut_at_the_picture_edge():
    # The mask touches the top-left corner: no room for padding there.
    box = inpaint_region(box_mask((400, 400), (0, 0, 50, 50)), (512, 512), 32, True)
    assert box == (0, 0, 82, 82)


def test_near_an_edge_the_box_is_shifted_not_cut():
    # A tall mask on the right edge: the box grows to the left instead of past the edge.
    picture, size = (1000, 1000), (512, 512)
    box = inpaint_region(box_mask(picture, (960, 100, 1000, 700)), size, 32, True)
    assert box[2] == 1000
    assert box[1] == 68 and box[3] == 732
    width, height = box[2] - box[0], box[3] - box[1]
    assert width == height  # the full aspect, not a box cut at the edge
    assert contains(box, (960, 100, 1000, 700))


def test_near_the_bottom_the_box_is_shifted_up():
    box = inpaint_region(box_mask((600, 1000), (100, 980, 500, 1000)), (512, 512), 10, True)
    assert box[3] == 1000
    assert box[3] - box[1] == box[2] - box[0] == 420
    assert contains(box, (100, 980, 500, 1000))


def test_when_the_picture_is_too_small_the_box_is_the_whole_side():
    # A wide processing size for a narrow picture: width is capped at the picture's.
    box = inpaint_region(box_mask((200, 1000), (50, 400, 150, 600)), (768, 512), 8, True)
    assert (box[0], box[2]) == (0, 200)
    assert contains(box, (42, 392, 158, 608))


def test_feathered_mask_edge_counts():
    mask = box_mask((400, 400), (150, 150, 250, 250)).filter(ImageFilter.GaussianBlur(8))
    ys, xs = np.nonzero(np.asarray(mask))
    box = inpaint_region(mask, (256, 256), 0, True)
    assert box[0] <= xs.min() and box[2] >= xs.max() + 1
    assert box[1] <= ys.min() and box[3] >= ys.max() + 1


# --- crop_resize, paste_back, match_colours -------------------------------------------------------


@pytest.mark.parametrize("box", [(10, 20, 110, 170), (0, 0, 512, 768), (5, 5, 37, 29)])
def test_crop_resize_returns_the_processing_size(box):
    picture = noise_picture((600, 800), 1)
    result = crop_resize(picture, box, (512, 768))
    assert result.size == (512, 768)
    assert result.mode == "RGB"


def test_crop_resize_takes_the_box():
    picture = Image.new("RGB", (100, 100), (0, 0, 255))
    picture.paste((255, 0, 0), (20, 20, 60, 60))
    assert np.asarray(crop_resize(picture, (20, 20, 60, 60), (64, 64))).tolist() == (
        np.full((64, 64, 3), (255, 0, 0)).tolist()
    )


@pytest.fixture
def feathered():
    """A 200×160 noise picture, a feathered mask in it, the box around it, a noise crop."""
    base = noise_picture((200, 160), 2)
    mask = box_mask((200, 160), (60, 40, 140, 120)).filter(ImageFilter.GaussianBlur(6))
    box = inpaint_region(mask, (64, 64), 8, True)
    generated = noise_picture((box[2] - box[0], box[3] - box[1]), 3)
    return base, mask, box, generated


@pytest.mark.parametrize("color_correction", [False, True])
def test_paste_back_keeps_every_unmasked_pixel(feathered, color_correction):
    base, mask, box, generated = feathered
    result = paste_back(base, generated, box, mask, color_correction=color_correction)
    assert result.size == base.size
    assert result.mode == "RGB"
    outside = np.asarray(mask) == 0
    partly = (np.asarray(mask) > 0) & (np.asarray(mask) < 255)
    assert outside.any() and partly.any()
    pixels, original = np.asarray(result), np.asarray(base)
    assert (pixels[outside] == original[outside]).all()
    # Something was painted inside the mask.
    assert (pixels[~outside] != original[~outside]).any()


def test_paste_back_takes_the_generated_pixels_where_the_mask_is_full(feathered):
    base, mask, box, generated = feathered
    result = np.asarray(paste_back(base, generated, box, mask, color_correction=False))
    full = np.asarray(mask) == 255
    assert full.any()
    crop = np.asarray(generated)
    ys, xs = np.nonzero(full)
    assert (result[ys, xs] == crop[ys - box[1], xs - box[0]]).all()


def test_paste_back_blends_on_the_feathered_edge(feathered):
    base, mask, box, generated = feathered
    result = np.asarray(paste_back(base, generated, box, mask, color_correction=False))
    weight = np.asarray(mask, np.float32) / 255
    ys, xs = np.nonzero((weight > 0) & (weight < 1))
    painted = np.asarray(generated, np.float32)[ys - box[1], xs - box[0]]
    expected = painted * weight[ys, xs, None] + np.asarray(base)[ys, xs] * (
        1 - weight[ys, xs, None]
    )
    assert np.abs(result[ys, xs] - expected).max() <= 1


def test_paste_back_scales_the_processed_picture_into_the_box():
    base = noise_picture((300, 200), 4)
    box = (100, 50, 200, 150)
    mask = box_mask((300, 200), box)
    processed = Image.new("RGB", (512, 512), (10, 200, 30))
    result = paste_back(base, processed, box, mask, color_correction=False)
    assert result.size == (300, 200)
    pixels = np.asarray(result)
    assert (pixels[50:150, 100:200] == (10, 200, 30)).all()
    assert (pixels[:50] == np.asarray(base)[:50]).all()


def test_colour_correction_removes_a_colour_cast():
    reference = noise_picture((96, 96), 5).filter(ImageFilter.GaussianBlur(2))
    mask = box_mask((96, 96), (16, 16, 80, 80)).filter(ImageFilter.GaussianBlur(4))
    box = (0, 0, 96, 96)
    cast = np.clip(np.asarray(reference).astype(int) + np.array([40, 0, 0]), 0, 255).astype(
        np.uint8
    )
    generated = Image.fromarray(cast, "RGB")
    inside = np.asarray(mask) > 0
    target = np.asarray(reference)[inside].mean(0)

    def error(correct):
        result = paste_back(reference, generated, box, mask, color_correction=correct)
        return np.abs(np.asarray(result)[inside].mean(0) - target).sum()

    plain, corrected = error(False), error(True)
    assert plain > 15
    assert corrected < plain / 3


def test_match_colours_with_zero_weight_returns_the_source():
    source = np.asarray(noise_picture((32, 24), 6))
    reference = np.asarray(noise_picture((32, 24), 7))
    result = match_colours(source, reference, np.zeros((24, 32), np.float32))
    assert np.array_equal(result, source)


def test_match_colours_moves_the_mean_to_the_reference():
    source = np.full((16, 16, 3), (200, 60, 60), np.uint8)
    reference = np.full((16, 16, 3), (90, 120, 160), np.uint8)
    result = match_colours(source, reference, np.ones((16, 16), np.float32))
    assert np.abs(result.astype(int) - reference).max() <= 3


def lightness_spread(rgb):
    return float(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)[:, :, 0].std())


@pytest.mark.parametrize(("reference_range", "expected_ratio"), [(60, 0.75), (20, 1 / 1.5)])
def test_match_colours_moves_the_spread_but_never_more_than_the_limit(
    reference_range, expected_ratio
):
    ramp = np.linspace(0, 1, 64, dtype=np.float32)[None, :, None]
    source = np.broadcast_to(np.round(100 + 80 * ramp), (16, 64, 3)).astype(np.uint8)
    reference = np.broadcast_to(np.round(110 + reference_range * ramp), (16, 64, 3))
    result = match_colours(source, reference.astype(np.uint8), np.ones((16, 64), np.float32))
    ratio = lightness_spread(result) / lightness_spread(source)
    assert ratio == pytest.approx(expected_ratio, abs=0.05)


# --- latent_preview -------------------------------------------------------------------------------


def test_latent_preview_size_and_colours():
    latents = torch.zeros(2, 4, 8, 12)
    latents[0, 0] = 1.0
    latents[0, 0, 0, 0] = 0.0
    latents[1] = 5.0  # only the first latent is shown
    picture = latent_preview(latents)
    assert picture.mode == "RGB"
    assert picture.size == (12, 8)
    pixels = np.asarray(picture)
    # Latent channel 0 of SD1.x is mostly luminance: (0.298, 0.207, 0.208) of [-1, 1].
    assert tuple(pixels[3, 5]) == (165, 154, 154)
    assert tuple(pixels[0, 0]) == (128, 128, 128)


def test_latent_preview_of_a_single_latent():
    picture = latent_preview(torch.randn(1, 4, 8, 12))
    assert (picture.mode, picture.size) == ("RGB", (12, 8))


# --- ControlModeNets ------------------------------------------------------------------------------


def tiny_controlnet(seed):
    torch.manual_seed(seed)
    net = ControlNetModel(
        in_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        conditioning_embedding_out_channels=(16, 16, 32, 32),
    )
    # ControlNet's zero convolutions start at 0; random ones make every residual count.
    zeroed = [
        net.controlnet_cond_embedding.conv_out,
        *net.controlnet_down_blocks,
        net.controlnet_mid_block,
    ]
    with torch.no_grad():
        for module in zeroed:
            for parameter in module.parameters():
                parameter.normal_(0, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    threads = torch.get_num_threads()
    # Tensors this small gain nothing from threads; on a busy CPU they cost seconds a call.
    torch.set_num_threads(1)
    yield [tiny_controlnet(11), tiny_controlnet(12)]
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(2, 4, 8, 8, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(2, 77, 32, generator=generator),
        "controlnet_cond": [torch.rand(2, 3, 64, 64, generator=generator) for _ in range(2)],
    }


def run_modes(nets, inputs, modes, scales, cfg_batch=True):
    wrapper = ControlModeNets(nets)
    wrapper.set_modes(tuple(modes), cfg_batch=cfg_batch)
    with torch.no_grad():
        down, mid = wrapper(**inputs, conditioning_scale=list(scales))
    return [*down, mid]


def run_diffusers(nets, inputs, scales):
    with torch.no_grad():
        down, mid = MultiControlNetModel(nets)(
            **inputs, conditioning_scale=list(scales), return_dict=False
        )
    return [*down, mid]


def assert_all_close(actual, expected):
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_tiny_nets_give_nonzero_residuals(nets, inputs):
    residuals = run_diffusers(nets, inputs, [1.0, 1.0])
    assert len(residuals) == 5
    assert all(r.abs().mean() > 1e-3 for r in residuals)
    alone = run_diffusers(
        nets[:1], {**inputs, "controlnet_cond": inputs["controlnet_cond"][:1]}, [1.0]
    )
    assert not torch.allclose(residuals[0], alone[0])


def test_balanced_equals_diffusers_multi_controlnet(nets, inputs):
    expected = run_diffusers(nets, inputs, [1.0, 1.0])
    assert_all_close(run_modes(nets, inputs, [BALANCED, BALANCED], [1.0, 1.0]), expected)
    expected = run_diffusers(nets, inputs, [0.6, 1.3])
    assert_all_close(run_modes(nets, inputs, [BALANCED, BALANCED], [0.6, 1.3]), expected)


@pytest.mark.parametrize("active", [0, 1])
def test_prompt_more_important_soft_scales_the_residuals(nets, inputs, active):
    scales = [1.0 if index == active else 0.0 for index in range(2)]
    modes = [BALANCED, BALANCED]
    balanced = run_modes(nets, inputs, modes, scales)
    modes[active] = PROMPT_MORE
    soft = run_modes(nets, inputs, modes, scales)
    count = len(balanced)
    for k, (s, b) in enumerate(zip(soft, balanced, strict=True)):
        assert torch.allclose(s, b * SOFT_BASE ** (count - 1 - k), atol=1e-6)
    # The deepest (mid) residual keeps its strength; the shallowest is scaled most.
    assert torch.allclose(soft[-1], balanced[-1])
    assert SOFT_BASE ** (count - 1) == pytest.approx(0.825**4)


def test_modes_apply_per_unit(nets, inputs):
    pose_only = run_modes(nets, inputs, [PROMPT_MORE, BALANCED], [1.0, 0.0])
    canny_only = run_modes(nets, inputs, [BALANCED, BALANCED], [0.0, 1.0])
    both = run_modes(nets, inputs, [PROMPT_MORE, BALANCED], [1.0, 1.0])
    assert_all_close(both, [a + b for a, b in zip(pose_only, canny_only, strict=True)])


def test_controlnet_more_important_leaves_the_uncond_half_free(nets, inputs):
    scales = [1.0, 0.0]
    soft = run_modes(nets, inputs, [PROMPT_MORE, BALANCED], scales)
    strong = run_modes(nets, inputs, [CONTROL_MORE, BALANCED], scales, cfg_batch=True)
    for s, c in zip(soft, strong, strict=True):
        assert (c[:1] == 0).all()
        assert torch.allclose(c[1:], s[1:], atol=1e-6)
        assert s[:1].abs().max() > 0


def test_controlnet_more_important_without_cfg_batch_is_soft(nets, inputs):
    scales = [1.0, 0.0]
    soft = run_modes(nets, inputs, [PROMPT_MORE, BALANCED], scales)
    strong = run_modes(nets, inputs, [CONTROL_MORE, BALANCED], scales, cfg_batch=False)
    assert_all_close(strong, soft)


def counting(monkeypatch, net):
    calls = []
    original = net.forward

    def forward(*args, **kwargs):
        calls.append(kwargs.get("conditioning_scale"))
        return original(*args, **kwargs)

    monkeypatch.setattr(net, "forward", forward)
    return calls


def test_a_unit_with_scale_zero_is_not_run(nets, inputs, monkeypatch):
    pose_calls, canny_calls = counting(monkeypatch, nets[0]), counting(monkeypatch, nets[1])
    result = run_modes(nets, inputs, [BALANCED, BALANCED], [1.0, 0.0])
    assert (len(pose_calls), len(canny_calls)) == (1, 0)
    expected = run_diffusers(nets, inputs, [1.0, 0.0])
    assert_all_close(result, expected)
    run_modes(nets, inputs, [BALANCED, CONTROL_MORE], [0, 0.5])
    assert (len(pose_calls), len(canny_calls)) == (2, 2)  # the diffusers run called both


def test_no_active_unit_gives_zero_residuals(nets, inputs, monkeypatch):
    canny_calls = counting(monkeypatch, nets[1])
    residuals = run_modes(nets, inputs, [CONTROL_MORE, PROMPT_MORE], [0.0, 0.0])
    assert not canny_calls
    assert len(residuals) == 5
    assert all((r == 0).all() for r in residuals)
    assert residuals[0].shape == (2, 32, 8, 8)


# --- select_models --------------------------------------------------------------------------------


def test_select_models_picks_the_tiny_kit(tiny_kit):
    models = select_models(tiny_kit, GenerationParams())
    assert models.checkpoint.kind == "checkpoints"
    assert models.checkpoint.name == CHECKPOINT == "tiny-sd-inpaint"
    assert [net.name for net in models.controlnets] == ["tiny-openpose", "tiny-canny"]
    assert tuple(net.name for net in models.controlnets) == CONTROLNETS
    assert models.vae is None


def test_select_models_by_name(tiny_kit):
    params = GenerationParams(checkpoint="tiny-sd-inpaint")
    assert select_models(tiny_kit, params).checkpoint.name == "tiny-sd-inpaint"


def test_select_models_on_an_empty_folder_lists_everything_missing(tmp_path):
    with pytest.raises(ModelNotFoundError) as caught:
        select_models(tmp_path, GenerationParams())
    message = str(caught.value)
    assert "checkpoint" in message
    assert str(tmp_path / "checkpoints") in message
    assert "openpose ControlNet" in message
    assert "canny ControlNet" in message
    assert str(tmp_path / "controlnet") in message
    assert "fetch_models" in message


def test_select_models_unknown_checkpoint_lists_installed_ones(tiny_kit):
    with pytest.raises(ModelNotFoundError) as caught:
        select_models(tiny_kit, GenerationParams(checkpoint="realistic-vision-v6"))
    message = str(caught.value)
    assert "realistic-vision-v6" in message
    assert "tiny-sd-inpaint" in message
