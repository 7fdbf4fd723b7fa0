"""The size a run paints at when none is asked for: its checkpoint's native one."""

from pipelines.params import GenerationParams
from pipelines.selection import NATIVE_SIZES, at_native_size
from tests import model_files as mf


def _sdxl_folder(root):
    mf.write_sdxl_checkpoint(
        root / "checkpoints" / "xl-inpainting.safetensors", **mf.tiny_sdxl_configs(True)
    )
    mf.write_sd15_checkpoint(root / "checkpoints" / "sd15.safetensors", **mf.tiny_sd15_configs())
    return root


def test_an_unset_size_is_the_checkpoints_native_one(tmp_path):
    root = _sdxl_folder(tmp_path)
    # The inpainting checkpoint is the default, and it is SDXL's.
    assert (at_native_size(root, "sd", GenerationParams())).width == 832
    assert at_native_size(root, "sd", GenerationParams()).height == 1216
    named = at_native_size(root, "sd", GenerationParams(checkpoint="sd15"))
    assert (named.width, named.height) == NATIVE_SIZES["sd15"] == (512, 768)
    # The preview and tiny engines paint at SD 1.5's whatever is installed.
    for engine in ("preview", "tiny"):
        params = at_native_size(root, engine, GenerationParams())
        assert (params.width, params.height) == (512, 768)


def test_a_given_size_is_kept_and_a_half_given_one_completed(tmp_path):
    root = _sdxl_folder(tmp_path)
    given = GenerationParams(width=640, height=640)
    assert at_native_size(root, "sd", given) is given
    half = at_native_size(root, "sd", GenerationParams(width=1024))
    assert (half.width, half.height) == (1024, 1216)


def test_a_checkpoint_that_is_not_installed_leaves_the_refusal_to_model_selection(tmp_path):
    params = at_native_size(_sdxl_folder(tmp_path), "sd", GenerationParams(checkpoint="nope"))
    assert (params.width, params.height) == (512, 768)
