"""File paths that arrive from the network, confined to the folders the config names.

A seed image sent over OSC may be a built-in seed name (``groove_94``), empty (text to
image), or a file inside ``paths.seeds``: a name (``loop.png``, or ``loop`` for
``loop.png``), a relative path below it (``set2/loop.png``), or an absolute path that lies
inside it. Everything else is refused with a :class:`~riffengine.errors.UserError`: ``..``
anywhere, absolute paths elsewhere, symbolic links that lead out of the folder, NUL bytes,
files that do not exist. An accepted file is returned as its absolute path inside the folder,
so the renderer finds it whatever its working folder.

Pure functions plus a few ``stat`` calls; safe on the loop's thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from riffengine.errors import UserError


def _inside(path: str, folder: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def confine(value: str, folder: str, builtins: Iterable[str] = (), what: str = "path", suffix: str = ".png") -> str:
    """The file ``value`` names inside ``folder`` (absolute), a built-in name, or ``""``.

    ``suffix`` is tried when a name without one is not a file. Raises UserError naming
    ``what``, the value and the folder.
    """
    if value == "" or value in set(builtins):
        return value
    shown = value if len(value) <= 80 else value[:77] + "..."
    where = f"the folder {folder!r}"
    if "\0" in value:
        raise UserError(f"{what}: {shown!r} contains a NUL character; send a file name")
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise UserError(f"{what}: {shown!r} contains '..'; send a file name inside {where}")
    base = os.path.abspath(folder)
    candidate = os.path.normpath(value if os.path.isabs(value) else os.path.join(base, value))
    if not _inside(candidate, base):
        raise UserError(f"{what}: {shown!r} is outside {where}; send a file name inside it (or a built-in name)")
    if (
        not os.path.isfile(candidate)
        and suffix
        and not candidate.endswith(suffix)
        and os.path.isfile(candidate + suffix)
    ):
        candidate += suffix
        if not _inside(candidate, base):
            raise UserError(f"{what}: {shown!r} leads outside {where}; send a file inside it")
    if not os.path.isfile(candidate):
        raise UserError(
            f"{what}: {shown!r} is not a file in {where} nor a built-in name; "
            f"put the file there or send a built-in name"
        )
    return candidate


BUILTIN_SEEDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "seeds")
"""The built-in seed images' folder (``riffengine/seeds``)."""


def builtin_seed_names(folder: str = BUILTIN_SEEDS) -> tuple[str, ...]:
    """Names of the built-in seed images (PNG stems), without importing the renderer."""
    try:
        return tuple(sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".png")))
    except OSError:
        return ()
