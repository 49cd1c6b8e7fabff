"""Render workers beyond the local thread: Ray actors across GPUs and machines.

- :mod:`.cluster`: finding Ray (an optional extra) and joining or starting an instance.
- :mod:`.actor`: the actor, one per GPU, that loads the model once and makes clips.
- :mod:`.pool`: the pool the engine submits to, with the local worker's interface; spare
  workers render the guesses of :mod:`riffengine.speculation`; faults fall back to local.

See ``docs/scale-out.md``.
"""
