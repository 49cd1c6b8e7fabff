"""The renderer's speed levers keep the images: channels-last, fused QKV, and torch.compile
(whole-graph capture checked with the ``aot_eager`` backend, which generates no kernels).

How fast they make a render is measured by ``bench/render.py``, never asserted here.
"""

from pathlib import Path

import pytest
import torch
from golden import GOLDEN

from riffengine.errors import UserError
from riffengine.render.model import load_model, optimize_model
from riffengine.render.renderer import Renderer, resolve_mix
from riffengine.render.request import PromptSlot, RenderRequest, Side

OG_BEAT = GOLDEN / "seed_images" / "og_beat.png"


def request(guidance: float, steps: int = 3) -> RenderRequest:
    side = Side(prompts=(PromptSlot("lofi beat"),), seed=7, denoise=0.6, guidance=guidance)
    return RenderRequest(a=side, steps=steps, width=64, seed_image=str(OG_BEAT), negative="noise")


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    """Images from the model with no levers, at guidance 7 and guidance 1."""
    renderer = Renderer(load_model(str(tiny_model_dir)))
    return {g: renderer.render_pixels(request(g)) for g in (7.0, 1.0)}


def max_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


def test_channels_last_and_fused_qkv_keep_the_image(tiny_model_dir, plain):
    model = optimize_model(load_model(str(tiny_model_dir)), channels_last=True, fuse_qkv=True)
    assert not model.compiled
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    renderer = Renderer(model)
    for guidance, image in plain.items():
        assert max_difference(renderer.render_pixels(request(guidance)), image) <= 1


def test_compiled_model_captures_whole_graphs_and_keeps_the_image(tiny_model_dir, plain):
    model = optimize_model(
        load_model(str(tiny_model_dir)), channels_last=True, compile_mode="max-autotune", backend="aot_eager"
    )
    assert model.compiled
    renderer = Renderer(model)
    # fullgraph=True: a graph break anywhere in the UNet or VAE decoder raises here
    assert max_difference(renderer.render_pixels(request(7.0)), plain[7.0]) <= 1
    # guidance 1 still feeds the UNet two rows (no new shape, no recompile mid-show)
    unguided = request(1.0)
    assert renderer.text_embeddings(unguided, resolve_mix(unguided)).shape[0] == 2
    assert max_difference(renderer.render_pixels(unguided), plain[1.0]) <= 1


def test_unknown_compile_mode_is_a_user_error(tiny_model_dir):
    with pytest.raises(UserError, match="compile mode 'fastest' is unknown: use one of default"):
        optimize_model(load_model(str(tiny_model_dir)), compile_mode="fastest")


def test_a_worker_thread_gets_its_own_cuda_graph_state():
    """torch 2.11 asserts when a thread other than the importing one looks up its CUDA-graph
    trees; the renderer's guard gives the worker thread that state (checked without a GPU)."""
    import threading

    from torch._inductor import cudagraph_trees

    from riffengine.render.model import allow_cuda_graphs_on_this_thread

    outcome = {}

    def look_up(guard: bool) -> None:
        try:
            if guard:
                allow_cuda_graphs_on_this_thread()
                allow_cuda_graphs_on_this_thread()  # twice: a no-op the second time
            outcome[guard] = type(cudagraph_trees.get_container(0)).__name__
        except AssertionError:
            outcome[guard] = "AssertionError"

    for guard in (False, True):
        thread = threading.Thread(target=look_up, args=(guard,))
        thread.start()
        thread.join()
    assert outcome[True] == "TreeManagerContainer"
    # outcome[False] is "AssertionError" on torch 2.11; once torch fixes it the guard can go


def test_warm_up_compiles_past_the_cache(tiny_model_dir, tmp_path):
    """The engine's first clip may be a cache hit; a compiled model still renders once first,
    on the render thread, so that no compile lands on a later clip mid-set."""
    from riffengine.clipmaker import ClipMaker, ClipSpec
    from riffengine.render.cache import CachedRenderer, RenderCache

    model = load_model(str(tiny_model_dir))
    renderer = Renderer(model)
    cached = CachedRenderer(renderer, RenderCache(tmp_path / "cache", 10**8))
    spec = ClipSpec(request(7.0), model_frames=64 * 441, out_frames=64 * 441)
    cached.render(spec.request, num_frames=spec.model_frames)  # now a hit
    cached.flush()
    model.compiled = True  # the flag alone: what compiling does to shapes is tested above
    renders = []
    original = renderer.render_device_pixels
    renderer.render_device_pixels = lambda *a, **k: renders.append(1) or original(*a, **k)
    maker = ClipMaker(cached, output_rate=44100)
    first = maker.render(spec)
    assert cached.hits == 1 and len(renders) == 1  # the clip came from the cache; one warm-up
    maker.render(ClipSpec(request(7.0, steps=2), spec.model_frames, spec.out_frames))
    assert len(renders) == 2  # no second warm-up: only the new clip's render
    assert first.audio.shape == (64 * 441, 2)


def test_the_engine_applies_the_configured_levers(tiny_model_dir):
    from riffengine.config import Settings, merge_overrides
    from riffengine.engine import build_renderer

    settings = merge_overrides(
        Settings(),
        {"model.id": str(tiny_model_dir), "model.device": "cpu", "model.channels_last": True, "model.fuse_qkv": True},
    )
    model = build_renderer(settings).model
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    processors = {type(p).__name__ for p in model.unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
    plain = build_renderer(merge_overrides(settings, {"model.channels_last": "auto", "model.fuse_qkv": "auto"})).model
    assert not plain.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert {type(p).__name__ for p in plain.unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_cpu_threads_leave_a_core_to_the_audio_and_the_engine():
    from riffengine.render.speed import cpu_threads

    assert [cpu_threads("auto", n) for n in (None, 1, 2, 16)] == [1, 1, 1, 15]
    assert cpu_threads(3, 2) == 3  # a number is taken as it is


def test_the_engine_renders_on_the_configured_cpu_threads(tiny_model_dir):
    from riffengine.config import Settings, merge_overrides
    from riffengine.engine import build_renderer
    from riffengine.errors import UserError as SettingsError

    base = {"model.id": str(tiny_model_dir), "model.device": "cpu"}
    for threads in (1, 2):
        build_renderer(merge_overrides(Settings(), {**base, "model.cpu_threads": threads}))
        assert torch.get_num_threads() == threads
    with pytest.raises(SettingsError, match="cpu_threads"):
        merge_overrides(Settings(), {"model.cpu_threads": 0})


def test_the_compile_cache_persists_in_the_riffengine_cache_folder(tmp_path):
    from riffengine.render.speed import compile_cache_dir, persist_compile_cache

    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert persist_compile_cache(env) == str(tmp_path / "riffengine" / "compile")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "riffengine" / "compile")
    assert compile_cache_dir({"RIFFENGINE_COMPILE_CACHE": "/srv/kernels"}) == Path("/srv/kernels")
    mine = {"TORCHINDUCTOR_CACHE_DIR": "/var/cache/mine", "XDG_CACHE_HOME": str(tmp_path)}
    assert persist_compile_cache(mine) == "/var/cache/mine"
    torch_own = {"TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor_me", "XDG_CACHE_HOME": str(tmp_path)}
    folder = persist_compile_cache(torch_own, torch_default="/tmp/torchinductor_me")
    assert folder == torch_own["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "riffengine" / "compile")
