"""The guesses spare render workers make (riffengine/speculation.py) and the pool's pure parts."""

from __future__ import annotations

import pytest

from riffengine import evolve, speculation
from riffengine.planner import clip_key
from riffengine.render.workers.cluster import actor_options, init_arguments
from riffengine.render.workers.pool import HANG_MIN_SECONDS, SpeculationStore, hang_limit
from riffengine.state import apply, apply_many, initial_state


def two_sided(alpha=0.5, **more):
    return apply_many(initial_state(), [("prompt_b", ["jazz", "", "", ""]), ("alpha", alpha), *more.items()])


def test_alpha_neighbours_nearest_first_on_the_grid():
    assert speculation.alpha_neighbours(0.5, 0.1) == [0.4, 0.6, 0.3, 0.7]
    assert speculation.alpha_neighbours(0.0, 0.25) == [0.25, 0.5, 0.75, 1.0]
    assert speculation.alpha_neighbours(0.33, 0.1) == [0.3, 0.4, 0.2, 0.5]
    assert speculation.alpha_neighbours(0.5, 0.0) == []


def test_guesses_are_the_alpha_neighbours_then_the_scenes_never_the_state_itself():
    state = two_sided(0.5)
    scene = {"prompt_a": ["rain on a tin roof", "", "", ""]}
    keys = speculation.candidates(state, None, 0.1, [scene], limit=8)
    alphas = [key[0].alpha for key in keys[:4]]
    assert alphas == [0.4, 0.6, 0.3, 0.7]
    assert keys[4][0].a.prompts[0].text == "rain on a tin roof"
    assert clip_key(state) not in keys
    assert keys[0] == clip_key(apply(state, "alpha", 0.4))  # exactly what a knob at 0.4 asks for


def test_no_alpha_guesses_without_a_side_b():
    assert speculation.candidates(initial_state(), None, 0.1) == []


def test_walk_guesses_are_the_next_loops_of_the_walk():
    state = apply(initial_state(), "evolve", 0.25)
    first = evolve.first_loop(state)
    keys = speculation.candidates(state, first, 0.0, walk_steps=3)
    following = evolve.next_loop(first, state)
    assert keys[0] == following.key and keys[1] == evolve.next_loop(following, state).key
    assert len(keys) == 3


def test_a_limit_and_a_skip_list():
    state = two_sided(0.5)
    skip = [clip_key(apply(state, "alpha", 0.4))]
    keys = speculation.candidates(state, None, 0.1, limit=2, skip=skip)
    assert [key[0].alpha for key in keys] == [0.6, 0.3]


def test_actor_options_one_gpu_each_or_one_cpu():
    assert actor_options("auto", 4.0)["num_gpus"] == 1
    assert "num_gpus" not in actor_options("cpu", 4.0)
    assert "num_gpus" not in actor_options("auto", 0.0)
    options = actor_options("cuda", 1.0)
    assert options["max_restarts"] == -1 and options["max_task_retries"] == 0


def test_ray_addresses():
    assert "address" not in init_arguments("local")
    assert init_arguments("auto")["address"] == "auto"
    assert init_arguments("10.0.0.2:6379")["address"] == "10.0.0.2:6379"


def test_hang_limit_follows_the_slowest_recent_render():
    assert hang_limit([]) == HANG_MIN_SECONDS
    assert hang_limit([1.0, 20.0]) == pytest.approx(100.0)


def test_the_speculation_store_drops_the_least_recently_used():
    store = SpeculationStore(size=2)
    store.put("a", 1, "ray-1", guessed=True)
    store.put("b", 2, "ray-0")
    assert store.take("a") == (1, "ray-1")
    store.put("c", 3, "ray-2")
    assert "b" not in store and "a" in store and "c" in store
    assert store.take("b") is None and store.take("c") == (3, "ray-2")
    assert (store.hits, store.guess_hits) == (2, 1)
