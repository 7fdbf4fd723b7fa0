"""IP-Adapter: files told apart, picked and loaded through diffusers' ``load_ip_adapter``, the
garment's picture steering the tiny engine, and the cached UNet given back as it was."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionControlNetInpaintPipeline, UNet2DConditionModel
from safetensors.torch import save_file

from pipelines import cache, generate, selection
from pipelines.__main__ import main
from pipelines.architectures import architecture_of, detect, tensor_shapes
from pipelines.engines import find_weights
from pipelines.errors import InvalidInputError, ModelNotFoundError, UntrustedModelError
from pipelines.infotext import parse_infotext, read_png_infotext
from pipelines.ip_adapter import Needs, adapter_needs, encoder_config, load_encoder
from pipelines.loading import load_state_dict
from pipelines.params import GenerationParams, IPAdapterUnit, params_from_dict
from pipelines.registry import scan_models
from pipelines.request import RuntimeConfig
from pipelines.samples import draw_product_shot
from tests.conftest import IP_ADAPTER as ADAPTER
from tests.model_files import clip_vision_model, write_clip_vision, write_ip_adapter
from tests.pipelines.painting import SIZE, garment_cutout, inpaint_inputs, mean_difference, paint


def _unet(kit):
    return UNet2DConditionModel.from_pretrained(kit / "checkpoints" / "tiny-sd-inpaint" / "unet")


def _entry(kit, kind, name):
    return next(e for e in scan_models(kit) if e.kind == kind and e.name == name)


# --- the files -----------------------------------------------------------------------------------


def _ip_shapes(width: int = 768, **image_proj) -> dict:
    shapes = {
        "ip_adapter.1.to_k_ip.weight": (320, width),
        "ip_adapter.1.to_v_ip.weight": (320, width),
    }
    return shapes | {f"image_proj.{key}": shape for key, shape in image_proj.items()}


def test_ip_adapters_and_clip_vision_encoders_are_told_apart(ip_kit, tmp_path):
    plain = detect(_ip_shapes(**{"proj.weight": (3072, 1024), "norm.weight": (768,)}))
    assert (plain.kind, plain.family, plain.layout) == ("ipadapter", "sd15", "plain")
    assert plain.label == "SD 1.5 IP-Adapter (plain)"
    plus = detect(_ip_shapes(2048, **{"latents": (1, 16, 1280), "proj_in.weight": (1280, 1280)}))
    assert (plus.family, plus.layout) == ("sdxl", "plus")
    faceid = _ip_shapes(**{"proj.0.weight": (1024, 512)}) | {
        "ip_adapter.1.to_k_lora.down.weight": (128, 320)
    }
    assert detect(faceid).layout == "faceid"
    labels = {entry.kind: architecture_of(entry) for entry in scan_models(ip_kit)}
    assert labels["clip_vision"] == "CLIP vision encoder"
    assert labels["ipadapter"].endswith("IP-Adapter (plain)")  # the tiny UNet's text width


def test_an_original_bin_adapter_reads_as_its_safetensors(ip_kit, tmp_path):
    """h94's ``.bin`` files hold {"image_proj": {...}, "ip_adapter": {...}}; tensors only."""
    path = write_ip_adapter(tmp_path / "ipadapter" / "old.bin", _unet(ip_kit), image_embeds=16)
    assert set(torch.load(path, weights_only=True)) == {"image_proj", "ip_adapter"}
    from_bin = load_state_dict(path)
    from_safetensors = load_state_dict(ip_kit / "ipadapter" / f"{ADAPTER}.safetensors")
    assert from_bin.keys() == from_safetensors.keys()
    assert all(torch.equal(from_bin[k], from_safetensors[k]) for k in from_bin)


def test_what_an_adapter_reads_from_its_encoder(ip_kit, tmp_path):
    assert adapter_needs(_entry(ip_kit, "ipadapter", ADAPTER)) == Needs("image_embeds", 16)
    folder = tmp_path / "ipadapter"
    folder.mkdir()
    plus = _ip_shapes(**{"latents": (1, 16, 768), "proj_in.weight": (768, 1280)})
    faceid = _ip_shapes(**{"proj.0.weight": (1024, 512), "norm.weight": (768,)})
    for name, shapes in (("plus", plus), ("faceid", faceid)):
        save_file(
            {key: torch.zeros(shape) for key, shape in shapes.items()},
            folder / f"{name}.safetensors",
        )
    entries = {e.name: e for e in scan_models(tmp_path)}
    assert adapter_needs(entries["plus"]) == Needs("hidden_states", 1280)
    with pytest.raises(InvalidInputError, match="insightface"):
        adapter_needs(entries["faceid"])


def test_the_encoder_is_built_from_its_shapes_alone(tmp_path):
    written = write_clip_vision(tmp_path / "clip_vision" / "tower.safetensors", dtype=torch.float32)
    entry = scan_models(tmp_path)[0]
    config = encoder_config(tensor_shapes(written))
    assert (config["image_size"], config["patch_size"], config["hidden_size"]) == (32, 8, 32)
    loaded = load_encoder(entry)
    original = clip_vision_model()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = original(pixels), loaded(pixels, output_hidden_states=True)
    assert torch.allclose(expected.image_embeds, got.image_embeds, atol=1e-6)
    assert loaded.config.num_hidden_layers == 2 and loaded.config.projection_dim == 16


# --- picking them --------------------------------------------------------------------------------


def _params(**unit) -> GenerationParams:
    return GenerationParams(width=SIZE[0], height=SIZE[1], ip_adapter=IPAdapterUnit(**unit))


def test_the_first_adapter_an_encoder_fits_is_picked_and_only_for_a_garment(ip_kit, tiny_kit):
    picked = selection.select_models(ip_kit, _params()).ip_adapter
    assert (picked.adapter.name, picked.encoder.name) == (ADAPTER, "CLIP-tiny")
    assert selection.select_models(ip_kit, _params(model=ADAPTER)).ip_adapter == picked
    assert selection.select_models(ip_kit, _params(), garment=False).ip_adapter is None
    assert selection.select_models(ip_kit, _params(weight=0)).ip_adapter is None
    assert selection.select_models(tiny_kit, _params()).ip_adapter is None  # none installed
    with pytest.raises(ModelNotFoundError, match="'no-such-adapter'"):
        selection.select_models(ip_kit, _params(model="no-such-adapter"))


def test_an_encoder_of_the_wrong_width_is_not_paired(ip_kit, tmp_path):
    kit = tmp_path / "models"
    shutil.copytree(ip_kit, kit)
    shutil.rmtree(kit / "clip_vision")
    write_clip_vision(kit / "clip_vision" / "wide.safetensors", projection=24)
    assert selection.select_models(kit, _params()).ip_adapter is None  # off: it is optional
    with pytest.raises(ModelNotFoundError, match="16-wide image embeddings for ip-adapter_tiny"):
        selection.select_models(kit, _params(model=ADAPTER))


def test_the_unit_in_json_and_its_checks():
    params = params_from_dict({"ip_adapter": {"weight": 0.9, "model": ADAPTER}})
    assert params.ip_adapter == IPAdapterUnit(model=ADAPTER, weight=0.9)
    assert params_from_dict(params.to_dict()) == params
    with pytest.raises(InvalidInputError) as error:
        params_from_dict({"ip_adapter": {"weight": 3}})
    assert error.value.argument == "ip_adapter.weight"
    with pytest.raises(InvalidInputError, match="unknown fields scale"):
        params_from_dict({"ip_adapter": {"scale": 1}})


def test_folders_without_it_say_what_is_missing(ip_kit, tmp_path):
    assert find_weights(ip_kit).ip_adapter_missing == ""
    missing = find_weights(tmp_path).ip_adapter_missing
    assert missing.startswith("IP-Adapter is off: no IP-Adapter in")
    assert "clip_vision" in missing


# --- painting with it ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs():
    return inpaint_inputs()


def _paint(kit, inputs, garment: str | None = "tshirt", **unit) -> np.ndarray:
    params = replace(_params(**unit), steps=3, seed=5)
    generator = generate.Generator(selection.select_models(kit, params), RuntimeConfig())
    try:
        picture = generator.garment_picture(garment_cutout(garment)) if garment else None
        return paint(generator, inputs, params, garment=picture)
    finally:
        generator.close()


def test_it_loads_through_load_ip_adapter_and_the_garment_steers(ip_kit, inputs, monkeypatch):
    loads = []
    original = StableDiffusionControlNetInpaintPipeline.load_ip_adapter

    def counted(pipe, state, *args, **kwargs):
        loads.append(sorted(state))
        return original(pipe, state, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionControlNetInpaintPipeline, "load_ip_adapter", counted)
    off = _paint(ip_kit, inputs, weight=0.0)
    assert loads == []  # off: nothing loaded
    tee = _paint(ip_kit, inputs, weight=1.0)
    assert loads == [["image_proj", "ip_adapter"]]
    assert mean_difference(off, tee) > 0.5
    loaded = cache.load_count()
    assert mean_difference(tee, _paint(ip_kit, inputs, weight=1.0)) == 0  # the same run is the same
    assert cache.load_count() == loaded  # the encoder and the adapter's tensors were cached
    assert (
        mean_difference(tee, _paint(ip_kit, inputs, "dress", weight=1.0)) > 0.1
    )  # the picture's doing
    assert mean_difference(tee, _paint(ip_kit, inputs, weight=0.4)) > 0.1  # and the weight's


def test_the_cached_unet_is_given_back_without_it(ip_kit, inputs):
    before = _paint(ip_kit, inputs, weight=0.0)
    _paint(ip_kit, inputs, weight=1.0)
    params = _params()
    generator = generate.Generator(
        selection.select_models(ip_kit, params, garment=False), RuntimeConfig()
    )
    unet = generator.pipe.unet
    assert unet.encoder_hid_proj is None
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())
    assert generator.pipe.image_encoder is None
    assert np.array_equal(before, _paint(ip_kit, inputs, weight=0.0))


def test_an_adapter_failing_half_loaded_leaves_the_cached_unet_as_it_was(ip_kit, monkeypatch):
    # diffusers swaps the attention processors, then builds the image projection: fail there.
    def broken(self, *args, **kwargs):
        raise KeyError("image_proj.proj.weight")

    monkeypatch.setattr(UNet2DConditionModel, "_convert_ip_adapter_image_proj_to_diffusers", broken)
    with pytest.raises(InvalidInputError, match="does not fit"):
        generate.Generator(selection.select_models(ip_kit, _params()), RuntimeConfig())
    monkeypatch.undo()
    generator = generate.Generator(
        selection.select_models(ip_kit, _params(), garment=False), RuntimeConfig()
    )
    unet = generator.pipe.unet
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())


def test_a_loaded_adapter_without_a_garment_picture_is_an_error(ip_kit, inputs):
    with pytest.raises(Exception, match="no garment picture"):
        _paint(ip_kit, inputs, garment=None, weight=1.0)


def test_with_a_manifest_an_unlisted_adapter_is_refused(ip_kit, tmp_path, capsys):
    manifest = tmp_path / "manifest.sha256"
    assert main(["models", "--models", str(ip_kit), "--write-manifest", str(manifest)]) == 0
    capsys.readouterr()
    lines = [line for line in manifest.read_text().splitlines() if "ipadapter/" not in line]
    manifest.write_text("\n".join(lines) + "\n")
    models = selection.select_models(ip_kit, _params())
    with pytest.raises(UntrustedModelError, match=r"ipadapter/ip-adapter_tiny\.safetensors"):
        generate.Generator(models, RuntimeConfig(manifest=manifest))


# --- from the CLI --------------------------------------------------------------------------------


def _modelshot(kit, tmp_path, name, *extra) -> dict:
    garment = tmp_path / "tee.png"
    draw_product_shot("tshirt", size=(192, 256)).image.save(garment)
    out = tmp_path / name
    # The sd engine, on the tiny kit's files (the tiny engine reads MODELS_DIR/tiny).
    args = ["modelshot", "--engine", "sd", "--models", str(kit), "--garment", str(garment)]
    args += ["--category", "upper", "--steps", "2", "--seed", "4", "--width", "64"]
    args += ["--height", "96", "--hires-scale", "1", "--out", str(out), *extra]
    assert main(args) == 0
    return parse_infotext(read_png_infotext(out / "result.png"))


def test_the_cli_uses_it_and_the_infotext_says_so(ip_kit, tmp_path):
    info = _modelshot(ip_kit, tmp_path, "on", "--ip-adapter-weight", "0.7")
    unit = info["ControlNet 3"]
    assert "Module: ip-adapter_clip" in unit and "Weight: 0.7" in unit
    assert f"Model: {ADAPTER} [" in unit
    off = _modelshot(ip_kit, tmp_path, "off", "--ip-adapter-weight", "0")
    assert "ControlNet 3" not in off


def test_vit_h_is_read_from_its_shapes_as_released():
    """ComfyUI's CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors carries no config: every number
    of it (16 heads, 224-pixel pictures in 14-pixel patches) comes from the shapes."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    released = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        projection_dim=1024,
        num_hidden_layers=32,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        hidden_act="gelu",
    )
    with torch.device("meta"):
        tower = CLIPVisionModelWithProjection(released)
    found = encoder_config({name: tuple(t.shape) for name, t in tower.state_dict().items()})
    for key, value in found.items():
        assert getattr(released, key) == value, key
