"""The tracks/overlay debug image: the input frame with each present object's mask, box and id drawn."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ..core.types import FrameResult
from .params import OverlayConfig


def id_colour(obj_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per id (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((obj_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_overlay(rgb: np.ndarray, result: FrameResult, config: OverlayConfig) -> np.ndarray:
    """bgr8 image of ``rgb`` with the result drawn on it."""
    out = np.ascontiguousarray(rgb[:, :, ::-1])
    for obj in result.objects:
        if not obj.present:
            continue
        colour = id_colour(obj.obj_id)
        out[obj.mask] = (out[obj.mask] * (1 - config.alpha) + np.array(colour) * config.alpha).astype(np.uint8)
        if obj.box is None:
            continue
        x0, y0, x1, y1 = obj.box
        if config.draw_boxes:
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
        if config.draw_labels:
            text = f"{obj.obj_id} {obj.label}".strip()
            cv2.putText(out, text, (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    if not result.ok:
        cv2.putText(out, f"fault: {result.status}"[:80], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1,
                    cv2.LINE_AA)
    return out
