"""LoRA adapters on the tiny model: a LoRA built here, saved as a file, loaded through the real
loader; it changes the image, unloads back to the base, fuses; wrong files get clear errors;
the instant preset renders in its configured steps with the LCM scheduler."""

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from riffengine.config import (
    INSTANT_GUIDANCE,
    INSTANT_SCHEDULER,
    INSTANT_STEPS,
    AdapterSpec,
    Settings,
    initial_values,
    merge_overrides,
)
from riffengine.errors import UserError
from riffengine.render.adapters import (
    load_adapters,
    random_lora,
    save_lora,
    unload_adapters,
)
from riffengine.render.cache import model_identity
from riffengine.render.model import load_model, optimize_model
from riffengine.render.renderer import Renderer
from riffengine.render.request import PromptSlot, RenderRequest, Side

REQUEST = RenderRequest(a=Side((PromptSlot("lofi beat"),), seed=3), steps=2, width=64)


@pytest.fixture(scope="module")
def lora_file(tiny_model_dir, tmp_path_factory):
    """A random rank-4 LoRA (UNet and text encoder) for the tiny model, as a safetensors file."""
    model = load_model(str(tiny_model_dir))
    path = tmp_path_factory.mktemp("lora") / "tiny-lora.safetensors"
    return save_lora(random_lora(model, rank=4, seed=1), path)


@pytest.fixture(scope="module")
def base_pixels(tiny_model_dir):
    return Renderer(load_model(str(tiny_model_dir))).render_pixels(REQUEST)


def render(model, request=REQUEST) -> torch.Tensor:
    return Renderer(model).render_pixels(request)


def lora_layers(module) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) for m in module.modules())


def test_adapter_loads_changes_the_image_and_unloads_to_the_base(tiny_model_dir, lora_file, base_pixels):
    model = load_adapters(load_model(str(tiny_model_dir)), [AdapterSpec(str(lora_file))])
    assert lora_layers(model.unet) > 0 and lora_layers(model.text_encoder) > 0
    assert model.adapters == (AdapterSpec(str(lora_file)),) and not model.adapters_fused
    adapted = render(model)
    assert (adapted.float() - base_pixels.float()).abs().mean() > 1.0
    unload_adapters(model)
    assert lora_layers(model.unet) == 0 and lora_layers(model.text_encoder) == 0
    assert torch.equal(render(model), base_pixels)


def test_weight_zero_is_the_base_and_fusing_keeps_the_image(tiny_model_dir, lora_file, base_pixels):
    off = load_adapters(load_model(str(tiny_model_dir)), [AdapterSpec(str(lora_file), 0.0)])
    assert torch.equal(render(off), base_pixels)
    half = AdapterSpec(str(lora_file), weight=0.5)
    unfused = render(load_adapters(load_model(str(tiny_model_dir)), [half]))
    fused_model = load_adapters(load_model(str(tiny_model_dir)), [half], fuse_weights=True)
    assert lora_layers(fused_model.unet) == 0 and fused_model.adapters_fused
    fused = render(fused_model)
    assert not torch.equal(fused, base_pixels)
    assert (fused.float() - unfused.float()).abs().max() <= 2  # float32 rounding only
    # plain layers again: the fused-QKV lever sees the adapted weights
    fused_qkv = render(optimize_model(fused_model, fuse_qkv=True))
    assert (fused_qkv.float() - fused.float()).abs().max() <= 2
    with pytest.raises(UserError, match="fused adapters cannot be unloaded"):
        unload_adapters(fused_model)


def test_adapters_change_the_cache_identity(tiny_model_dir, lora_file):
    model = load_model(str(tiny_model_dir))
    plain = model_identity(model)
    load_adapters(model, [AdapterSpec(str(lora_file))])
    assert model_identity(model) != plain


def expect_error(model, path, *words):
    with pytest.raises(UserError) as info:
        load_adapters(model, [AdapterSpec(str(path))])
    message = str(info.value)
    assert str(path.name) in message and "Traceback" not in message
    for word in words:
        assert word in message, message


def test_wrong_files_get_errors_naming_the_file_and_the_fix(tiny_model_dir, lora_file, tmp_path):
    model = load_model(str(tiny_model_dir))
    expect_error(model, tmp_path / "lcm-lora.safetensors", "does not exist", "download it once")
    pickled = tmp_path / "style.bin"
    pickled.write_bytes(b"\x80\x04")
    expect_error(model, pickled, "not a .safetensors file")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    expect_error(model, garbage, "not a readable safetensors file")
    full = tmp_path / "checkpoint.safetensors"
    save_file({"conv_in.weight": torch.zeros(4, 4, 3, 3)}, str(full))
    expect_error(model, full, "is not a LoRA", "model.id")
    state = random_lora(model, rank=4, seed=2, text_encoder=False)
    shapes = tmp_path / "sdxl-style.safetensors"
    save_file(
        {k: torch.zeros(v.shape[0], v.shape[1] + 8) if "lora_A" in k else v for k, v in state.items()}, str(shapes)
    )
    expect_error(model, shapes, "does not fit this model", "Stable Diffusion 1.5")
    names = tmp_path / "other-model.safetensors"
    save_file(
        {
            "unet.no_such_block.proj.lora_A.weight": torch.zeros(4, 8),
            "unet.no_such_block.proj.lora_B.weight": torch.zeros(8, 4),
        },
        str(names),
    )
    expect_error(model, names, "Stable Diffusion 1.5")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    expect_error(model, empty, "holds no .safetensors file")
    two = tmp_path / "two-files"
    two.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (two / name).write_bytes(lora_file.read_bytes())
    expect_error(model, two, "several .safetensors files", "a.safetensors")


def test_a_folder_with_the_diffusers_file_name_loads(tiny_model_dir, lora_file, tmp_path):
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(lora_file.read_bytes())
    model = load_adapters(load_model(str(tiny_model_dir)), [AdapterSpec(str(tmp_path))])
    assert lora_layers(model.unet) > 0


# --- presets and the few-step schedulers -----------------------------------------------------


def few_step_settings(lora_path, **extra) -> Settings:
    values = {"model.adapters": [{"path": str(lora_path), "few_step": True}], "render.preset": "instant", **extra}
    return merge_overrides(Settings(), values)


def test_instant_preset_needs_a_few_step_adapter(lora_file):
    with pytest.raises(
        UserError,
        match=r"render.preset: instant needs a few-step adapter.*"
        r"few_step: true",
    ):
        merge_overrides(Settings(), {"render.preset": "instant"})
    with pytest.raises(UserError, match="few_step: true"):
        merge_overrides(Settings(), {"render.preset": "instant", "model.adapters": [str(lora_file)]})
    with pytest.raises(UserError, match="render.fast: is true but render.preset is instant"):
        few_step_settings(lora_file, **{"render.fast": True})
    with pytest.raises(UserError, match="model.adapters: .*use a path, or a mapping"):
        merge_overrides(Settings(), {"model.adapters": [{"weight": 1.0}]})
    values = dict(initial_values(few_step_settings(lora_file)))
    assert (values["steps"], values["scheduler"]) == (INSTANT_STEPS, INSTANT_SCHEDULER)
    assert values["guidance_a"] == values["guidance_b"] == INSTANT_GUIDANCE
    fast = dict(initial_values(merge_overrides(Settings(), {"render.preset": "fast"})))
    old = dict(initial_values(merge_overrides(Settings(), {"render.fast": True})))
    assert (fast["steps"], fast["scheduler"]) == (old["steps"], old["scheduler"]) == (20, "dpm")


def count_unet_calls(model) -> list[int]:
    calls = [0]
    model.unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_instant_renders_in_its_steps_with_lcm(tiny_model_dir, lora_file, base_pixels):
    settings = few_step_settings(lora_file)
    values = dict(initial_values(settings))
    model = load_adapters(load_model(str(tiny_model_dir)), settings.model.adapters)
    calls = count_unet_calls(model)
    side = Side((PromptSlot("lofi beat"),), seed=3, guidance=values["guidance_a"])
    text_to_image = RenderRequest(
        a=side, steps=values["steps"], scheduler=values["scheduler"], seed_image=None, width=64
    )
    steps = []
    pixels = Renderer(model).render_pixels(text_to_image, on_step=lambda i, n: steps.append(n))
    assert calls[0] == INSTANT_STEPS and steps == [INSTANT_STEPS] * INSTANT_STEPS
    assert pixels.shape == (3, 512, 64)
    calls[0] = 0
    img2img = dataclasses.replace(text_to_image, seed_image="groove_94")
    Renderer(model).render_pixels(img2img)
    assert calls[0] == int(INSTANT_STEPS * side.denoise)  # denoise keeps the last 3 of 4


@pytest.mark.parametrize("scheduler", ["lcm", "tcd"])
def test_few_step_schedulers_render_deterministically(tiny_model_dir, scheduler):
    renderer = Renderer(load_model(str(tiny_model_dir)))
    request = dataclasses.replace(REQUEST, scheduler=scheduler)
    first = renderer.render_pixels(request)
    assert torch.equal(first, renderer.render_pixels(request))
    assert first.float().std() > 0


def test_engine_builds_the_renderer_with_its_adapters(tiny_model_dir, lora_file):
    from riffengine.engine import build_renderer

    settings = few_step_settings(
        lora_file, **{"model.id": str(tiny_model_dir), "model.device": "cpu", "model.fuse_adapters": True}
    )
    renderer = build_renderer(settings)
    assert renderer.model.adapters_fused and renderer.model.adapters[0].few_step
    assert lora_layers(renderer.model.unet) == 0
