"""What a control surface can do to the engine: set parameter values, recall and save scenes.

OSC and MIDI both go through :class:`Controls`, so a value or a scene means the same from
either. Thread rule: loop thread only, like the :class:`~riffengine.store.StateStore` it
wraps. Every mistake raises :class:`~riffengine.errors.UserError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from riffengine import validation
from riffengine.config import Settings
from riffengine.control import params
from riffengine.control.mapping import Action, RecallScene, SetValues
from riffengine.control.scenes import SceneBook
from riffengine.errors import UserError
from riffengine.state import State
from riffengine.store import StateStore


class Controls:
    """Applies control changes to the store; ``scene`` keys recall the configured scene."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        self.store = store
        self.settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings (a reload) read the scenes folder again."""
        self._settings = settings
        self.scenes = SceneBook(settings.scenes, settings.paths.scenes)

    def set(self, changes: Iterable[tuple[str, object]], source: str) -> State:
        """Apply ``(key, value)`` changes all or nothing; a ``scene`` key recalls that scene."""
        changes = list(changes)
        scenes = [value for key, value in changes if params.parse_key(key)[0].effect == "action"]
        if scenes:
            if len(changes) > 1:
                raise UserError("scene: recall a scene on its own, not together with other values")
            number = validation.validate("scene", scenes[0])
            return self.recall(number, source)  # type: ignore[arg-type]
        return self.store.apply(changes, source)

    def recall(self, which: int | str, source: str) -> State:
        """Recall a scene by number or name; UserError if there is no such scene."""
        values = self.scenes.get(which)
        number = which if isinstance(which, int) else self.scenes.number(which)
        return self.store.recall_scene(values, number, source)

    def save_scene(self, name: str | None = None) -> tuple[str, int]:
        """Save what plays now as a scene (see :mod:`riffengine.control.scenes`); its name and
        number. UserError for a bad name or an unwritable folder."""
        return self.scenes.save(self.store.state, name)

    def perform(self, actions: Iterable[Action], source: str) -> None:
        """Carry out mapping actions in order."""
        for action in actions:
            if isinstance(action, SetValues):
                self.set(action.changes, source)
            elif isinstance(action, RecallScene):
                self.recall(action.scene, source)
