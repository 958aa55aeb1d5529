"""Checks that turn a requested target into one that can start a track, each refusal with a reason.

A refusal is a ``Rejection``: ``reason`` is a short key callers count (``box``, ``mask``,
``max_objects``, ``resolution_mismatch`` ...), the text says exactly what is wrong. The node's own
input errors (``ros.convert.InputError``) are Rejections too, so every refusal is counted one way.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .types import Target, box_mask

_UNBOUNDED = (np.iinfo(np.int32).max,) * 2  # an image size no box lies outside


class Rejection(ValueError):
    """A refused input: ``reason`` names the kind (counted), the text says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _check_box(target: Target, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in target.box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise Rejection("box", f"target {target.obj_id}: box {target.box} has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise Rejection("box", f"target {target.obj_id}: box {target.box} has zero or negative area")
    cx0, cy0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    cx1, cy1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    if cx1 <= cx0 or cy1 <= cy0:
        raise Rejection("box", f"target {target.obj_id}: box {target.box} lies outside the {w}x{h} image")
    return cx0, cy0, cx1, cy1


def check_target(target: Target, shape: tuple[int, int] | None) -> Target:
    """``target`` for an image of ``shape`` (H, W): box clipped to the image, mask as bool. Raises a
    Rejection with reason ``box`` (box problems) or ``mask`` (mask size, empty mask, no overlap, nothing
    given). With ``shape`` None (the frame is not known yet), only what needs no size is checked and the
    target is returned unchanged."""
    oid = target.obj_id
    if target.box is None and target.mask is None:
        raise Rejection("mask", f"target {oid}: neither a box nor a mask")
    if shape is None:
        if target.box is not None:
            _check_box(target, _UNBOUNDED)
        return target
    h, w = shape
    box = _check_box(target, shape) if target.box is not None else None
    mask = None
    if target.mask is not None:
        mask = np.asarray(target.mask)
        if mask.shape != (h, w):
            raise Rejection("mask", f"target {oid}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
        mask = mask.astype(bool)
        if not mask.any():
            raise Rejection("mask", f"target {oid}: mask is empty")
        if box is not None:
            mask = mask & box_mask(mask.shape, box)
            if not mask.any():
                raise Rejection("mask", f"target {oid}: mask and box do not overlap")
    return Target(oid, target.label, box, mask)


def check_targets(targets: Iterable[Target], shape: tuple[int, int] | None) -> tuple[list[Target], list[Rejection]]:
    """``check_target`` on each: (the usable targets, one Rejection per refused one)."""
    ok, refused = [], []
    for target in targets:
        try:
            ok.append(check_target(target, shape))
        except Rejection as exc:
            refused.append(exc)
    return ok, refused


def latest_per_id(targets: Iterable[Target]) -> list[Target]:
    """One target per id, the latest given (one initialisation per id and frame), in first-seen order."""
    by_id: dict[int, Target] = {}
    for target in targets:
        by_id[target.obj_id] = target
    return list(by_id.values())


def within_capacity(targets: list[Target], known: set[int], max_objects: int) -> tuple[list[Target], list[Rejection]]:
    """Targets that fit beside the ``known`` ids (tracked or already waiting) under ``max_objects``; a target
    for a known id re-initialises it and always fits."""
    known, room, fits, refused = set(known), max_objects - len(known), [], []
    for target in targets:
        if target.obj_id in known or room > 0:
            room -= target.obj_id not in known
            known.add(target.obj_id)
            fits.append(target)
        else:
            refused.append(Rejection("max_objects", f"target {target.obj_id}: max_objects={max_objects} "
                                                    "already tracked or waiting"))
    return fits, refused
