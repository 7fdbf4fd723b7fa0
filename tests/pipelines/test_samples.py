"""The synthetic product shots the demo, tests and benchmarks draw."""

import numpy as np
import pytest

from pipelines.samples import CATEGORY_OF_SHAPE, draw_product_shot, garment_mask


@pytest.mark.parametrize("shape", sorted(CATEGORY_OF_SHAPE))
@pytest.mark.parametrize("background", ["plain", "gradient", "textured"])
def test_the_mask_is_exactly_where_the_garment_was_drawn(shape, background):
    shot = draw_product_shot(shape, size=(240, 320), background=background, label="LOGO")
    pixels = np.asarray(shot.image, dtype=int)
    mask = np.asarray(shot.mask) > 0
    plain = draw_product_shot(
        shape, size=(240, 320), background=background, colour=(200, 20, 20), label="LOGO"
    )
    changed = np.any(np.asarray(plain.image, dtype=int) != pixels, axis=2)
    # Changing the garment's colour changes pixels inside the mask and nowhere else.
    assert not changed[~mask].any()
    assert changed[mask].mean() > 0.95
    assert 0.15 < mask.mean() < 0.7
    assert shot.category == CATEGORY_OF_SHAPE[shape]


def test_holes_stay_holes():
    mask = np.asarray(garment_mask("tshirt", (400, 400))) > 0
    assert not mask[int(0.28 * 400), 200]  # the neck opening
    assert mask[int(0.33 * 400), 200]  # just below it: the garment
    trousers = np.asarray(garment_mask("trousers", (400, 400))) > 0
    assert not trousers[int(0.8 * 400), 200]  # between the legs


def test_unknown_shape_is_refused_by_name():
    with pytest.raises(ValueError, match="shape must be one of"):
        garment_mask("cape", (100, 100))
