"""Reading a YAML file the user wrote (config, MIDI mappings): one clear error per way it fails."""

from __future__ import annotations

import os

import yaml

from riffengine.errors import UserError


def read_yaml(path: str, what: str, hint: str) -> tuple[yaml.Node | None, object]:
    """``(node, data)`` of the YAML file at ``path``; the node keeps line numbers for messages.

    ``what`` names the file's role ("config file"), ``hint`` says how to fix a missing file.
    Every failure is a UserError naming the file, and the line and column for syntax errors.
    """
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder; give the path of a YAML {what}")
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc})") from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = exc.problem or exc.context or "invalid YAML"
        raise UserError(f"{where}: YAML syntax error: {problem}; fix the file there") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: YAML error: {exc}") from None
