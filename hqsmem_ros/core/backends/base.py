"""The one protocol every base VOS model implements.

The tracker calls, per frame: ``remove_object`` for ids a target re-initialises, ``step`` (all
objects, step 1 of the method), then ``add_object`` for targets initialised on this frame, each followed
by ``embed`` of its mask (its pinned reference entry), then ``accept`` with the accepted masks (teacher
forcing, step 4), then at the memory schedule ``embed`` and the ``evict_memory`` / ``write_memory``
calls that ``SmartMemory`` decided (step 5). A backend never decides what enters its memory by itself, and never
calls a refiner. Frames arrive as ``Frame``: a backend keys what it computes per frame on ``frame.index``
(``add_object`` and ``step`` on one frame share one analysis), and ``accept``, ``embed`` and
``write_memory`` concern the frame of the last ``step`` / ``add_object``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..types import Frame, Prediction


@runtime_checkable
class Backend(Protocol):
    name: str    # the user-facing backend name (the `backend` parameter's value)
    device: str  # where it runs, e.g. cpu, cuda:0

    def add_object(self, obj_id: int, frame: Frame, mask: np.ndarray, key: int) -> None:
        """Start tracking ``obj_id`` from ``mask`` on ``frame``; store that frame as memory entry ``key``
        (its reference frame; the entry may already exist when several objects start on one frame)."""

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking ``obj_id`` and drop it from every memory entry."""

    def step(self, frame: Frame) -> dict[int, Prediction]:
        """Segment every tracked object on ``frame`` (present or not: absent ones are searched for)."""

    def accept(self, masks: dict[int, np.ndarray]) -> None:
        """The accepted masks of the current frame: the prior for the next frame and what
        ``write_memory`` stores."""

    def embed(self, masks: dict[int, np.ndarray]) -> np.ndarray:
        """Embedding of the current frame for memory relevance: object-centric (features pooled over
        each mask, normalised, averaged); a global embedding when ``masks`` is empty or, for a backend
        with coarse features, when the masks cover none of them."""

    def write_memory(self, key: int) -> None:
        """Store the current frame with its accepted masks as memory entry ``key``."""

    def evict_memory(self, key: int) -> None:
        """Drop memory entry ``key``."""

    def memory_keys(self) -> list[int]:
        """Keys of the entries the backend holds (for tests and diagnostics)."""

    def memory_bytes(self) -> int:
        """Bytes held by the memory tensors."""

    def reset(self) -> None:
        """Forget every object and memory entry."""
