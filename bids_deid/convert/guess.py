"""Where one converted image goes (:class:`Guess`), shared by the header rules and the ReproIn parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_LABEL_RE = re.compile(r"[^A-Za-z0-9]")


@dataclass
class Guess:
    """Where one converted image goes.

    ``datatype`` is None for images that are skipped; ``reason`` says why, or which
    rule placed it. ``entities`` never holds sub/ses; ``run`` only when a heuristic set it.
    """

    datatype: str | None
    suffix: str | None
    entities: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # sidecar fields a user rule adds
    aslcontext: list[str] | None = None  # a user rule's ASL volume order (repeated over the run)

    @property
    def skipped(self) -> bool:
        return self.datatype is None


def sanitize_label(text: str) -> str:
    """A BIDS label from free text: alphanumerics only (empty if nothing is left)."""
    return _LABEL_RE.sub("", str(text))
