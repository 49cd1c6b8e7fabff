"""Rendering on Ray workers (render.backend: ray) with the tiny model and a real JACK server:
two workers render (the events name them), a spare worker's guess is heard with no new render,
a killed worker's job moves on and Ray restarts the worker, and the engine renders locally
when Ray goes away. The last test stops the session's Ray instance: keep it last."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from engine_fixtures import LiveEngine
from jack_fixtures import jack_server  # noqa: F401
from ray_fixtures import ray_instance  # noqa: F401
from surface_fixtures import wait_until

from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.errors import UserError

SLOW = 90.0
"""Waits that include a model load in a new worker process (seconds on 2 busy cores)."""


def ray_settings(tmp_path, tiny_model_dir, name, **extra) -> Settings:
    values = {
        "audio.output": "jack",
        "audio.jack_client_name": name,
        "audio.events": str(tmp_path / "events.jsonl"),
        "audio.ring_buffer_seconds": 4.0,
        "tempo.bpm": 120.0,
        "loop.bars": 1,
        "osc.enabled": False,
        "model.id": str(tiny_model_dir),
        "model.device": "cpu",
        "model.cpu_threads": 1,
        "render.steps": 2,
        "render.backend": "ray",
        "render.workers": 2,
        "render.ray.address": "auto",
        "cache.enabled": False,
        "initial.prompt_b/0": "jazz piano",
        "initial.alpha": 0.5,
    }
    values.update(extra)
    return merge_overrides(Settings(), values)


def done_for(live: LiveEngine, version: int):
    """The render `done` event of the first job for State ``version`` or later."""
    return live.wait_event(
        "render", lambda d: d.get("phase") == "done" and d.get("version", -1) >= version and not d.get("warm_up"), SLOW
    ).data


def test_ray_backend_without_ray_names_the_extra(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    settings = ray_settings(tmp_path, tiny_model_dir, "riffengine-noray", **{"audio.output": str(tmp_path / "o.wav")})
    with pytest.raises(UserError, match=r"Ray is not installed: pip install 'riffengine\[ray\]'"):
        asyncio.run(Engine(settings, duration=1.0, signals=False).run())


def test_two_workers_render_and_a_guessed_alpha_is_heard_with_no_new_render(
    jack_server, ray_instance, tmp_path, tiny_model_dir
):
    settings = ray_settings(tmp_path, tiny_model_dir, "riffengine-ray-guess")
    with LiveEngine(Engine(settings, signals=False)) as live:
        guess = live.wait_event("render_speculated", timeout=SLOW).data
        workers = {e.data["worker"] for e in live.kinds("worker_ready")}
        assert workers == {"ray-0", "ray-1"}
        pool = live.engine.worker
        renders_before = sum(w["renders"] for w in pool.status())
        state = live.call(live.engine.store.apply, {"alpha": guess["alpha"]}, "test")
        done = done_for(live, state.version)
        assert done["speculated"] is True and done["worker"] == guess["worker"]
        assert done["late"] is False
        assert sum(w["renders"] for w in pool.status()) == renders_before  # no new render
        scheduled = live.wait_event("loop_scheduled", lambda d: d["clip_id"] == done["clip_id"]).data
        assert scheduled["late"] is False and scheduled["alpha"] == guess["alpha"]
        # a change nobody guessed is rendered by the primary worker, and named so
        state = live.call(live.engine.store.apply, {"prompt_a/0": "tabla solo"}, "test")
        fresh = done_for(live, state.version)
        assert fresh["speculated"] is False and fresh["worker"] == "ray-0"
        assert "ray-0 idle" in live.engine.figures()["workers"] or "ray-0 busy" in live.engine.figures()["workers"]


def test_a_worker_killed_mid_render_loses_no_loop_and_comes_back(jack_server, ray_instance, tmp_path, tiny_model_dir):
    settings = ray_settings(
        tmp_path, tiny_model_dir, "riffengine-ray-kill", **{"render.speculate_alpha_step": 0.0, "render.steps": 4}
    )
    with LiveEngine(Engine(settings, signals=False)) as live:
        pool = live.engine.worker
        wait_until(lambda: all(w["state"] != "starting" for w in pool.status()), SLOW, "both workers")
        live.loops_after(1)
        state = live.call(live.engine.store.apply, {"prompt_a/0": "steel drums"}, "test")
        job = wait_until(lambda: pool.running, SLOW, "the render to start on a worker")
        worker = next(w["name"] for w in pool.status() if w["state"] == "busy")
        pid = pool.pid_of(worker)
        assert pid > 0 and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # the worker's own process, by its PID
        lost = live.wait_event("worker_lost", lambda d: d["worker"] == worker, SLOW).data
        assert lost["moved"] is True and lost["job"] == job.tag
        done = done_for(live, state.version)
        assert done["worker"] != worker and done["version"] == state.version
        back = live.wait_event("worker_restarted", lambda d: d["worker"] == worker, SLOW).data
        assert back["pid"] != pid and back["restarts"] == 1
        live.loops_after(2)
        starts = [e.data for e in live.kinds("loop_started")]
        for before, after in zip(starts, starts[1:]):  # the loops follow each other, none lost
            assert after["frame"] == before["frame"] + before["frames"]
        assert live.engine.figures()["underruns"] == 0


def test_when_ray_stops_renders_fall_back_to_local(jack_server, ray_instance, tmp_path, tiny_model_dir):
    """Stops the session's Ray instance: the last test of the session that uses it."""
    settings = ray_settings(
        tmp_path, tiny_model_dir, "riffengine-ray-stop", **{"render.workers": 1, "render.speculate_alpha_step": 0.0}
    )
    with LiveEngine(Engine(settings, signals=False)) as live:
        live.loops_after(1)
        ray_instance.shutdown()
        fallback = live.wait_event("render_fallback", timeout=SLOW).data
        assert "Ray" in fallback["reason"] or "worker" in fallback["reason"]
        state = live.call(live.engine.store.apply, {"prompt_a/0": "harp"}, "test")
        done = done_for(live, state.version)
        assert done["worker"] == "local"
        live.loops_after(2)
        assert live.engine.figures()["underruns"] == 0
