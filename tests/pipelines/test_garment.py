"""Stage 2: garment analysis of synthetic product shots with known masks."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.errors import InvalidInputError, ModelNotFoundError
from pipelines.garment import (
    analyze_garment,
    find_sam_checkpoint,
    garment_landmarks,
    load_sam_predictor,
)
from pipelines.samples import _SHAPES, CATEGORY_OF_SHAPE, draw_product_shot

SIZE = (384, 512)
SHAPES = sorted(CATEGORY_OF_SHAPE)


def iou(found: Image.Image, truth: Image.Image) -> float:
    a, b = np.asarray(found) > 127, np.asarray(truth) > 127
    return float((a & b).sum() / (a | b).sum())


def analyse(shot, **options):
    return analyze_garment(shot.image, shot.category, **options)


def at(mask: Image.Image, x: float, y: float) -> int:
    """The mask's value at a point given in fractions of its size."""
    return int(np.asarray(mask)[int(y * mask.height), int(x * mask.width)])


@pytest.mark.parametrize("background", ["plain", "gradient", "textured"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cutout_matches_the_drawn_garment(shape, background):
    shot = draw_product_shot(shape, size=SIZE, background=background)
    analysis = analyse(shot)
    assert iou(analysis.mask, shot.mask) >= 0.95
    assert analysis.method == "classical"
    assert analysis.category == shot.category


@pytest.mark.parametrize(
    ("colour", "background_colour"),
    [((250, 250, 250), (255, 255, 255)), ((240, 240, 240), (250, 250, 250))],
)
@pytest.mark.parametrize("shape", SHAPES)
def test_white_garment_on_white_background(shape, colour, background_colour):
    shot = draw_product_shot(shape, size=SIZE, colour=colour, background_colour=background_colour)
    assert iou(analyse(shot).mask, shot.mask) >= 0.95


@pytest.mark.parametrize("shape", ["tshirt", "jacket"])
def test_stripes_and_print_stay_garment_on_a_textured_background(shape):
    shot = draw_product_shot(shape, size=SIZE, background="textured", stripes=True, label="LOGO")
    assert iou(analyse(shot).mask, shot.mask) >= 0.95


def test_openings_that_show_the_background_stay_holes():
    tshirt = analyse(draw_product_shot("tshirt", size=SIZE)).mask
    assert at(tshirt, 0.50, 0.28) == 0  # the neck opening
    assert at(tshirt, 0.50, 0.34) == 255  # just below it
    trousers = analyse(draw_product_shot("trousers", size=SIZE)).mask
    assert at(trousers, 0.50, 0.80) == 0  # between the legs
    assert at(trousers, 0.50, 0.20) == 255  # above the crotch
    jacket = analyse(draw_product_shot("jacket", size=SIZE)).mask
    assert at(jacket, 0.50, 0.30) == 0  # the open front
    assert at(jacket, 0.50, 0.70) == 255  # closed below it


def test_enclosed_background_hole_stays_open_but_a_small_print_is_filled():
    shot = draw_product_shot("skirt", size=SIZE)
    picture, truth = shot.image.copy(), shot.mask.copy()
    width, height = SIZE
    hole = (int(0.44 * width), int(0.42 * height), int(0.56 * width), int(0.52 * height))
    dot = (int(0.30 * width), int(0.58 * height), int(0.32 * width), int(0.595 * height))
    background = picture.getpixel((2, 2))
    picture.paste(background, hole)  # a cut-out in the fabric shows the backdrop
    truth.paste(0, hole)
    picture.paste(background, dot)  # a tiny print of the backdrop's colour is still fabric
    mask = analyze_garment(picture, "lower").mask
    assert at(mask, 0.50, 0.47) == 0
    assert at(mask, 0.31, 0.587) == 255
    assert iou(mask, truth) >= 0.95


def test_real_transparency_is_the_mask():
    # Exported cut-outs often keep any colour under the transparent pixels: here, one flat colour
    # everywhere, which the classical cut-out alone would find empty.
    truth = draw_product_shot("dress", size=SIZE).mask
    rgba = Image.new("RGBA", SIZE, (20, 20, 20, 255))
    rgba.putalpha(truth)
    analysis = analyze_garment(rgba, "dress")
    assert iou(analysis.mask, truth) >= 0.99
    with pytest.raises(InvalidInputError, match="no garment found"):
        analyze_garment(rgba.convert("RGB"), "dress")


def test_cutout_is_the_shot_inside_the_mask_and_clear_outside():
    shot = draw_product_shot("tshirt", size=SIZE, label="LOGO")
    analysis = analyse(shot)
    cutout = np.asarray(analysis.cutout)
    mask = np.asarray(analysis.mask) > 127
    assert analysis.cutout.mode == "RGBA" and analysis.cutout.size == shot.image.size
    assert analysis.mask.mode == "L" and analysis.mask.size == shot.image.size
    assert (cutout[:, :, 3][~mask] == 0).all()
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (cutout[:, :, 3][inner] == 255).all()
    assert (cutout[:, :, :3][mask] == np.asarray(shot.image)[mask]).all()


def test_the_same_picture_gives_the_same_mask():
    # A real photograph: GrabCut's k-means start is random unless seeded.
    from skimage.data import astronaut

    photo = Image.fromarray(astronaut())
    first, second = analyze_garment(photo, "upper").mask, analyze_garment(photo, "upper").mask
    assert np.array_equal(np.asarray(first), np.asarray(second))


def test_canny_map_shows_the_garment_outline_and_print_but_not_the_background():
    shot = draw_product_shot("tshirt", size=SIZE, background="textured", label="LOGO")
    analysis = analyse(shot)
    edges = np.asarray(analysis.canny)
    assert analysis.canny.mode == "RGB" and analysis.canny.size == shot.image.size
    on = edges[:, :, 0] > 0
    mask = np.asarray(analysis.mask) > 127
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    assert not (on & (outside > 3)).any()  # no texture of the backdrop
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    assert (on & (inside > 5)).sum() > 50  # the printed label
    outline = mask & ~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    assert (on & (outside <= 3) & (inside <= 3)).sum() > 0.5 * outline.sum()


# Landmarks are checked against the drawn polygons' corners, in fractions of the shot's size.
def polygon_point(shape: str, index: int) -> tuple[float, float]:
    return _SHAPES[shape][0][0][index]


def near(found: tuple[float, float], expected: tuple[float, float], tolerance=0.03) -> bool:
    x, y = found[0] / SIZE[0], found[1] / SIZE[1]
    return abs(x - expected[0]) <= tolerance and abs(y - expected[1]) <= tolerance


def midpoint(a, b):
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def sleeve_ratio(marks, side: str) -> float:
    shoulder, end = np.array(marks[f"{side}_shoulder"]), np.array(marks[f"{side}_sleeve_end"])
    width = np.hypot(*np.subtract(marks["r_shoulder"], marks["l_shoulder"]))
    return float(np.hypot(*(end - shoulder)) / width)


def test_tshirt_landmarks_sit_on_the_drawn_outline():
    marks = analyse(draw_product_shot("tshirt", size=SIZE)).landmarks
    assert marks["r_shoulder"][0] < marks["l_shoulder"][0]  # the wearer's right: image left
    assert marks["r_sleeve_end"][0] < marks["r_shoulder"][0]
    assert marks["l_sleeve_end"][0] > marks["l_shoulder"][0]
    assert min(marks["r_hem"][1], marks["l_hem"][1]) > max(
        marks["r_shoulder"][1], marks["l_shoulder"][1]
    )
    corner = lambda index: polygon_point("tshirt", index)  # noqa: E731
    assert near(marks["r_shoulder"], corner(11))
    assert near(marks["l_shoulder"], corner(2))
    assert near(marks["r_sleeve_end"], midpoint(corner(9), corner(10)))
    assert near(marks["l_sleeve_end"], midpoint(corner(3), corner(4)))
    assert near(marks["r_hem"], corner(7))
    assert near(marks["l_hem"], corner(6))
    assert near(marks["neckline"], _SHAPES["tshirt"][1][0][2])  # the bottom of the neck opening
    assert 0.4 < sleeve_ratio(marks, "r") < 0.9  # a short sleeve


def test_long_sleeves_end_low_and_read_long():
    marks = analyse(draw_product_shot("hoodie", size=SIZE)).landmarks
    corner = lambda index: polygon_point("hoodie", index)  # noqa: E731
    assert near(marks["r_sleeve_end"], midpoint(corner(9), corner(10)))
    assert near(marks["l_sleeve_end"], midpoint(corner(3), corner(4)))
    assert near(marks["r_shoulder"], corner(11))
    assert sleeve_ratio(marks, "r") > 1.2 and sleeve_ratio(marks, "l") > 1.2


def test_dress_shoulders_are_the_strap_tops_and_it_has_no_sleeves():
    marks = analyse(draw_product_shot("dress", size=SIZE)).landmarks
    corner = lambda index: polygon_point("dress", index)  # noqa: E731
    assert near(marks["r_shoulder"], midpoint(corner(0), corner(1)))
    assert near(marks["l_shoulder"], midpoint(corner(3), corner(4)))
    assert near(marks["neckline"], corner(2))
    assert near(marks["r_hem"], corner(8)) and near(marks["l_hem"], corner(7))
    assert "r_sleeve_end" not in marks and "l_sleeve_end" not in marks


def test_trousers_have_a_crotch_and_a_skirt_has_none():
    marks = analyse(draw_product_shot("trousers", size=SIZE)).landmarks
    corner = lambda index: polygon_point("trousers", index)  # noqa: E731
    assert near(marks["r_waist"], corner(0)) and near(marks["l_waist"], corner(1))
    assert near(marks["r_hem"], corner(6)) and near(marks["l_hem"], corner(2))
    # The drawn gap narrows to a sliver below its apex; the found crotch is in that sliver.
    x, y = marks["crotch"][0] / SIZE[0], marks["crotch"][1] / SIZE[1]
    assert abs(x - 0.5) < 0.02 and corner(4)[1] - 0.01 <= y <= corner(4)[1] + 0.1
    skirt = analyse(draw_product_shot("skirt", size=SIZE)).landmarks
    assert set(skirt) == {"r_waist", "l_waist", "r_hem", "l_hem"}


def test_landmarks_follow_the_wearer_side_when_the_garment_is_lopsided():
    mask = np.asarray(draw_product_shot("tshirt", size=SIZE).mask) > 127
    mask[:, : int(0.22 * SIZE[0])] = False  # the right sleeve (image left) folded away
    marks = garment_landmarks(mask, "upper")
    assert sleeve_ratio(marks, "l") > sleeve_ratio(marks, "r")


def test_full_size_shot():
    shot = draw_product_shot("jacket", size=(768, 1024), stripes=True)
    analysis = analyse(shot)
    assert iou(analysis.mask, shot.mask) >= 0.95
    assert analysis.canny.size == analysis.cutout.size == (768, 1024)
    assert {"neckline", "r_shoulder", "l_sleeve_end", "r_hem"} <= set(analysis.landmarks)


# Bad input is refused with the argument named.
def test_a_plain_picture_has_no_garment():
    with pytest.raises(InvalidInputError, match="no garment found") as error:
        analyze_garment(Image.new("RGB", (400, 500), (200, 30, 30)), "upper")
    assert error.value.argument == "image"


@pytest.mark.parametrize("image", [Image.new("RGB", (100, 400)), np.zeros((400, 400, 3), np.uint8)])
def test_tiny_or_non_pil_pictures_are_refused(image):
    with pytest.raises(InvalidInputError) as error:
        analyze_garment(image, "upper")
    assert error.value.argument == "image"


def test_unknown_category_is_refused_by_name():
    shot = draw_product_shot("tshirt", size=SIZE)
    with pytest.raises(InvalidInputError, match="must be one of") as error:
        analyze_garment(shot.image, "hat")
    assert error.value.argument == "category"


def test_trousers_are_not_a_top():
    shot = draw_product_shot("trousers", size=SIZE)
    with pytest.raises(InvalidInputError, match="does not look like an upper") as error:
        analyze_garment(shot.image, "upper")
    assert error.value.argument == "category"


# SAM: a predictor stand-in for the choice among its masks, a tiny random SAM for the real API.
class ScriptedPredictor:
    """Answers every box with the given masks and scores, and remembers what it was asked."""

    def __init__(self, masks, scores):
        self.masks, self.scores = np.stack(masks), np.array(scores)
        self.image, self.box = None, None

    def set_image(self, image):
        self.image = image

    def predict(self, *, box, multimask_output):
        assert multimask_output
        self.box = box
        return self.masks, self.scores, None


def test_sam_best_plausible_mask_is_used():
    shot = draw_product_shot("trousers", size=SIZE, background="textured")
    truth = np.asarray(shot.mask) > 127
    whole = np.ones_like(truth)
    predictor = ScriptedPredictor([whole, truth, np.zeros_like(truth)], [0.99, 0.8, 0.95])
    analysis = analyse(shot, sam_predictor=predictor)
    assert analysis.method == "sam"
    assert iou(analysis.mask, shot.mask) >= 0.97
    assert predictor.image.shape == (SIZE[1], SIZE[0], 3)
    x0, y0, x1, y1 = predictor.box  # the classical garment's box, with a small margin
    ys, xs = np.nonzero(truth)
    assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() and y1 >= ys.max()
    assert x0 > 0.2 * SIZE[0] and x1 < 0.8 * SIZE[0]


def test_implausible_sam_masks_fall_back_to_the_classical_mask():
    shot = draw_product_shot("tshirt", size=SIZE)
    height, width = SIZE[1], SIZE[0]
    corner = np.zeros((height, width), bool)
    corner[:60, :60] = True  # outside the box it was asked about
    masks = [np.ones((height, width), bool), np.zeros((height, width), bool), corner]
    analysis = analyse(shot, sam_predictor=ScriptedPredictor(masks, [0.9, 0.8, 0.7]))
    assert analysis.method == "classical"
    assert np.array_equal(np.asarray(analysis.mask), np.asarray(analyse(shot).mask))


def test_sam_gets_the_whole_picture_when_the_classical_cutout_found_nothing():
    picture = Image.new("RGB", (400, 500), (90, 90, 90))
    truth = np.zeros((500, 400), bool)
    truth[100:400, 100:300] = True
    predictor = ScriptedPredictor([truth, truth, truth], [0.5, 0.6, 0.7])
    analysis = analyze_garment(picture, "upper", sam_predictor=predictor)
    assert analysis.method == "sam"
    assert predictor.box[0] < 20 and predictor.box[2] > 380


def tiny_sam(seed: int = 0, embed_dim: int = 32):
    """A SAM with random weights, small enough to run in milliseconds."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    image_size, patch = 64, 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch,
            embed_dim=embed_dim,
            depth=1,
            num_heads=1,
            out_chans=32,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=32,
            image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=32,
            transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=32, num_heads=1),
            iou_head_depth=1,
            iou_head_hidden_dim=16,
        ),
    ).eval()


def test_a_real_sam_predictor_runs_through_the_pipeline():
    from segment_anything import SamPredictor

    class Spy(SamPredictor):
        def predict(self, **kwargs):
            self.asked = kwargs
            self.answer = super().predict(**kwargs)
            return self.answer

    shot = draw_product_shot("tshirt", size=SIZE)
    predictor = Spy(tiny_sam())
    analysis = analyse(shot, sam_predictor=predictor)
    assert predictor.original_size == (SIZE[1], SIZE[0])  # it saw the shot at its own size
    assert predictor.asked["multimask_output"] is True
    masks, _, _ = predictor.answer
    assert masks.shape == (3, SIZE[1], SIZE[0])
    assert analysis.mask.size == shot.image.size
    # Random weights give garbage; whichever way it went, ``method`` tells the truth.
    classical = np.asarray(analyse(shot).mask)
    used_classical = np.array_equal(np.asarray(analysis.mask), classical)
    assert analysis.method == ("classical" if used_classical else "sam")


def test_load_sam_predictor_loads_a_plain_state_dict(tmp_path):
    import torch
    from safetensors.torch import save_file

    source = tiny_sam(seed=1)
    state = source.state_dict()
    torch.save(state, tmp_path / "sam_vit_b_tiny.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "sam_vit_b.safetensors")
    for name in ("sam_vit_b_tiny.pth", "sam_vit_b.safetensors"):
        predictor = load_sam_predictor(tmp_path / name, builder=tiny_sam)
        loaded = predictor.model.state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in state.items())
        assert not predictor.model.training


def test_load_sam_predictor_reads_the_model_type_from_the_file_name(tmp_path, monkeypatch):
    import segment_anything
    import torch

    built = []

    def registry_builder(model_type):
        def build():
            built.append(model_type)
            return tiny_sam()

        return build

    for model_type in ("vit_b", "vit_l", "vit_h"):
        monkeypatch.setitem(
            segment_anything.sam_model_registry, model_type, registry_builder(model_type)
        )
    state = tiny_sam().state_dict()
    for name in ("sam_vit_l_0b3195.pth", "SAM-ViT-H.pt", "weights.pth"):
        torch.save(state, tmp_path / name)
    load_sam_predictor(tmp_path / "sam_vit_l_0b3195.pth")
    load_sam_predictor(tmp_path / "SAM-ViT-H.pt")
    load_sam_predictor(tmp_path / "weights.pth", "vit_b")
    assert built == ["vit_l", "vit_h", "vit_b"]
    with pytest.raises(InvalidInputError, match="vit_b, vit_l or vit_h") as error:
        load_sam_predictor(tmp_path / "weights.pth")
    assert error.value.argument == "model_type"


class WritesAMarker:
    """Unpickling this would create ``path``: the kind of payload full unpickling runs."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_sam_predictor_refuses_pickles_that_need_full_unpickling(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "sam_vit_b_evil.pth"
    torch.save({"weight": WritesAMarker(marker)}, checkpoint)
    with pytest.raises(InvalidInputError, match="needs full unpickling") as error:
        load_sam_predictor(checkpoint, builder=tiny_sam)
    assert error.value.argument == "model"
    assert not marker.exists()


def test_load_sam_predictor_refuses_other_files(tmp_path):
    import torch

    with pytest.raises(ModelNotFoundError):
        load_sam_predictor(tmp_path / "sam_vit_b_missing.pth")
    (tmp_path / "sam_vit_b.ckpt").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"\.pth"):
        load_sam_predictor(tmp_path / "sam_vit_b.ckpt")
    (tmp_path / "sam_vit_b_junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError):
        load_sam_predictor(tmp_path / "sam_vit_b_junk.pth", builder=tiny_sam)
    torch.save(tiny_sam(embed_dim=48).state_dict(), tmp_path / "sam_vit_b_other.pth")
    with pytest.raises(InvalidInputError, match="does not hold SAM vit_b weights"):
        load_sam_predictor(tmp_path / "sam_vit_b_other.pth", builder=tiny_sam)


def test_find_sam_checkpoint(tmp_path):
    assert find_sam_checkpoint(tmp_path) is None
    sams = tmp_path / "sams"
    sams.mkdir()
    (sams / "README.txt").write_text("put SAM weights here")
    (sams / "weights.pth").write_bytes(b"")  # no model type in the name: unusable
    assert find_sam_checkpoint(tmp_path) is None
    (sams / "sam_vit_b_01ec64.pth").write_bytes(b"")
    assert find_sam_checkpoint(tmp_path) == sams / "sam_vit_b_01ec64.pth"
    (sams / "sam_vit_h_4b8939.pth").write_bytes(b"")
    assert find_sam_checkpoint(tmp_path) == sams / "sam_vit_h_4b8939.pth"


def test_a_painted_mask_gives_the_same_kind_of_analysis_as_the_automatic_one():
    from pipelines.garment import garment_from_mask

    shot = draw_product_shot("tshirt", size=(384, 512))
    automatic = analyze_garment(shot.image, "upper")
    painted = garment_from_mask(shot.image, shot.mask, "upper")
    assert painted.method == "painted" and painted.cutout.size == shot.image.size
    assert set(painted.landmarks) == set(automatic.landmarks)
    for name, (x, y) in painted.landmarks.items():
        ax, ay = automatic.landmarks[name]
        assert abs(x - ax) < 8 and abs(y - ay) < 8, name
    alpha = np.asarray(painted.cutout.getchannel("A")) > 127
    assert (alpha == (np.asarray(shot.mask) > 127)).mean() > 0.995
    assert np.asarray(painted.canny).any()


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (lambda size: Image.new("L", size, 0), "The mask is empty"),
        (lambda size: Image.new("L", size, 255), "covers the whole picture"),
        (lambda size: Image.new("L", (size[0] // 2, size[1]), 255), "product image's size"),
    ],
)
def test_a_painted_mask_that_shows_no_garment_is_refused_naming_the_mask(mask, message):
    from pipelines.garment import garment_from_mask

    shot = draw_product_shot("tshirt", size=(384, 512))
    with pytest.raises(InvalidInputError, match=message) as raised:
        garment_from_mask(shot.image, mask(shot.image.size), "upper")
    assert raised.value.argument == "mask"
