"""The session config a reconnect replays, and the ``session.update`` events not yet answered.

A ``session.update`` is remembered only once the server applied it (``session.updated``
answers the oldest unanswered one); an ``error`` naming its ``event_id`` forgets it. When a new
session starts, :meth:`SessionReplayer.plan` says what to send before anything else: the
remembered config, then every update the old connection never answered, in order.

Not thread-safe on its own: every method runs under the client's connection lock.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set, Tuple, Union

from . import json_codec as _json

__all__ = ["SessionReplayer", "Update", "deep_merge"]

Update = Tuple[str, Dict[str, Any], Union[str, bytes]]
"""One ``session.update`` sent and not answered yet: (event_id, session object, JSON)."""


def deep_merge(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``update`` into ``base`` (nested objects merged, everything else copied)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class SessionReplayer:
    """The remembered session config and the unanswered updates (connection lock held)."""

    def __init__(self, config: Optional[Mapping[str, Any]]) -> None:
        self.config: Optional[Dict[str, Any]] = (
            copy.deepcopy(dict(config)) if config is not None else None)
        self._pending: Deque[Update] = deque()

    def snapshot(self) -> Optional[Dict[str, Any]]:
        """A deep copy of the remembered config."""
        return copy.deepcopy(self.config)

    def remember(self, update: Mapping[str, Any], session_type: str) -> None:
        """Merge ``update`` into the config (created with ``type`` when there was none)."""
        if self.config is None:
            self.config = {"type": session_type}
        deep_merge(self.config, update)

    def track(self, entry: Update) -> None:
        """An update is about to be sent (its answer may come before the send returns)."""
        self._pending.append(entry)

    def untrack(self, entry: Update) -> None:
        """The update could not be sent after all."""
        try:
            self._pending.remove(entry)
        except ValueError:
            pass

    def applied(self) -> None:
        """``session.updated``: the oldest unanswered update took effect."""
        if self._pending:
            _, update, _ = self._pending.popleft()
            if self.config is None:
                self.config = {}
            deep_merge(self.config, update)

    def refused(self, event_id: Any) -> None:
        """An ``error`` answered the update ``event_id``: it is never replayed."""
        for i, (eid, _, _) in enumerate(self._pending):
            if eid == event_id:
                del self._pending[i]
                return

    def plan(self, queued: Set[str], new_id: Callable[[], str]
             ) -> Tuple[List[Union[str, bytes]], Optional[str]]:
        """What a new session gets first: the remembered config (a fresh ``session.update``)
        and the updates the old connection never answered, each on its own so a refusal stays
        its own. Updates still waiting in the send queue (``queued`` ids) go out with it.

        Returns:
            The frames to send, in order, and the ``event_id`` of the config's update.
        """
        unanswered = [u for u in self._pending if u[0] not in queued]
        waiting = [u for u in self._pending if u[0] in queued]
        self._pending.clear()
        frames: List[Union[str, bytes]] = []
        update_id: Optional[str] = None
        if self.config is not None:
            update_id = new_id()
            config = copy.deepcopy(self.config)
            data = _json.dumps({"type": "session.update", "event_id": update_id,
                                "session": config})
            self._pending.append((update_id, config, data))
            frames.append(data)
        for update in unanswered:
            self._pending.append(update)
            frames.append(update[2])
        self._pending.extend(waiting)
        return frames, update_id
