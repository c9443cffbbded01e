"""Which stored pieces a version of an object's state is made of (state_store.py keeps them): the
versions holding its anchors and its recent memory frames, its parent, and what its successor may
delete. Kept in the version's head, beside the state's own fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from object_state import ObjectState, StateError
from shape_codecs import ANSWER_FORMS
from tokens import is_token, object_tag


@dataclass(frozen=True)
class Lineage:
    """Which stored pieces a version is made of, and what to clean up after its successor."""

    anchors: tuple[str, ...]  # tokens of the versions holding each anchor's piece, in the state's order
    window: tuple[str, ...]  # tokens of the versions holding each memory frame, oldest first
    parent: str | None = None
    dropped: tuple[str, ...] = ()  # memory chunks that left the window at this version
    dropped_anchors: tuple[str, ...] = ()  # anchor pieces that left the state at this version
    # wall-clock time (epoch seconds) until which each of (*anchors, *window) is known to live
    until: tuple[float, ...] = ()

    def to_fields(self, answer_form: str) -> dict[str, Any]:
        """The lineage and the answer form as a head's metadata (see `from_fields`)."""
        return {
            "answer_form": answer_form,
            "anchors": list(self.anchors),
            "window": list(self.window),
            "parent": self.parent,
            "dropped": list(self.dropped),
            "dropped_anchors": list(self.dropped_anchors),
            "until": list(self.until),
        }

    @classmethod
    def from_fields(cls, info: dict[str, Any], token: str) -> tuple[Lineage, str]:
        """The lineage and answer form a head of `token` holds; every piece it names must belong to
        the same object (one slot), and the answer form must be one this tracker answers in. A head
        from before anchors names its one start piece as ``cond``."""
        try:
            anchors = info["anchors"] if "anchors" in info else [info["cond"]]
            dropped_anchors = info.get("dropped_anchors", [])
            tokens = [*anchors, *info["window"], *info["dropped"], *dropped_anchors]
            if info["parent"] is not None:
                tokens.append(info["parent"])
            tag = object_tag(token)
            if not all(is_token(t) and object_tag(t) == tag for t in tokens):
                raise ValueError("bad tokens")
            if info["answer_form"] not in ANSWER_FORMS:
                raise ValueError("bad answer form")
            until = tuple(float(t) for t in info["until"])
            if len(until) != len(anchors) + len(info["window"]):
                raise ValueError("bad lifetimes")
            lineage = cls(
                anchors=tuple(anchors),
                window=tuple(info["window"]),
                parent=info["parent"],
                dropped=tuple(info["dropped"]),
                dropped_anchors=tuple(dropped_anchors),
                until=until,
            )
        except (KeyError, TypeError, ValueError):
            raise StateError("corrupt tracker state (bad head)") from None
        return lineage, info["answer_form"]

    def successor(
        self, own_token: str, own_state: ObjectState, token: str, state: ObjectState, anchored: bool
    ) -> Lineage:
        """The lineage of version `token`, holding `state`, made from this version (`own_token`, holding
        `own_state`) by a step or, `anchored`, by a correction (the anchor on the state's frame is new)."""
        wrote_memory = bool(state.memories) and state.recent_frames[-1] == state.frame
        window = (*self.window, token) if wrote_memory else self.window
        keep = len(state.memories)
        kept_window = window[len(window) - keep :] if keep else ()
        anchors = self.anchors
        if anchored:
            by_frame = dict(zip(own_state.anchor_frames, self.anchors, strict=True))
            anchors = tuple(token if a.frame == state.frame else by_frame[a.frame] for a in state.anchors)
        return Lineage(
            anchors=anchors,
            window=kept_window,
            parent=own_token,
            dropped=tuple(t for t in window if t not in kept_window),
            dropped_anchors=tuple(t for t in self.anchors if t not in anchors),
        )
