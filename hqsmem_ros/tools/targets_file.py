"""Initial targets from a file, for bags without a ``targets`` topic, videos and cameras.

- ``.yaml`` / ``.yml`` / ``.json``: boxes (and/or mask PNGs) per object id, either a mapping

      1: [40, 60, 200, 220]                     # id: box x_min, y_min, x_max, y_max (pixels)
      2: {label: cup, box: [300, 80, 420, 260]}
      3: {mask: cup.png}                        # nonzero = object; relative to this file

  or the same entries as a list with an ``id`` key, optionally under a top-level ``targets`` key.
- ``.png``: a first-frame label image (pixel value = object id; DAVIS palette PNGs included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from ..core import davis_io
from ..core.types import Target


def load_targets(path: Path) -> list[Target]:
    path = Path(path)
    if path.suffix.lower() == ".png":
        return [Target(oid, "", None, mask) for oid, mask in davis_io.labels_to_masks(
            davis_io.read_label_png(path)).items()]
    text = path.read_text()
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    entries = data.items() if isinstance(data, dict) else ((e.get("id"), e) for e in data or [])
    targets = [_target(oid, spec, path) for oid, spec in entries]
    if not targets:
        raise ValueError(f"{path}: no targets")
    return targets


def _target(oid, spec, source: Path) -> Target:
    if oid is None:
        raise ValueError(f"{source}: a target without an id")
    if not isinstance(spec, dict):
        spec = {"box": spec}
    box = spec.get("box")
    if box is not None and len(box) != 4:
        raise ValueError(f"{source}: target {oid}: box must be [x_min, y_min, x_max, y_max], got {box}")
    mask = None
    if spec.get("mask"):
        mask = davis_io.read_label_png(source.parent / spec["mask"]) > 0
    if box is None and mask is None:
        raise ValueError(f"{source}: target {oid} has neither a box nor a mask")
    return Target(int(oid), str(spec.get("label", "")), tuple(float(v) for v in box) if box else None,
                  None if mask is None else np.asarray(mask, bool))
