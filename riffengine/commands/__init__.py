"""Subcommands of the ``riffengine`` CLI, one module each.

Each module defines ``register(subparsers)`` (adds its parser and sets ``func``) and the
function it points at, which takes the parsed arguments and returns an exit status.
"""
