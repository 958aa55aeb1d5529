"""DAVIS / YouTube-VOS folder layout: ``JPEGImages/<seq>/<stem>.jpg`` frames and
``Annotations/<seq>/<stem>.png`` palette PNGs whose pixel value is the object id (0 = background).

DAVIS annotates every frame; YouTube-VOS annotates only the frames where an object first appears.
Result folders use the same PNG format, either under ``Annotations/`` or directly as ``<seq>/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def _palette() -> list[int]:
    """The DAVIS colour map (bit-interleaved, as in the davis2017 toolkit): id 1 red, 2 green, ..."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


PALETTE = _palette()


def read_label_png(path: Path) -> np.ndarray:
    """Object-id image (uint8) of an annotation PNG: palette indices, or grey values for a plain PNG."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I;16", "I"):
            img = img.convert("L")
        return np.asarray(img).astype(np.uint16 if img.mode.startswith("I") else np.uint8)


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """Palette PNG of an object-id image; ids must be < 256 (the format's limit)."""
    if labels.size and int(labels.max()) > 255:
        raise ValueError(f"{path}: object id {int(labels.max())} does not fit a palette PNG (ids < 256)")
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(PALETTE)
    img.save(path)


def labels_to_masks(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(i): labels == i for i in np.unique(labels) if i != 0}


def masks_to_labels(masks: dict[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Object-id image; where masks overlap the higher id wins (a label image holds one id a pixel)."""
    labels = np.zeros(shape, np.uint16)
    for oid in sorted(masks):
        labels[masks[oid]] = oid
    return labels


def sequences(root: Path) -> list[str]:
    """Sequence names of a dataset root (from JPEGImages/, else Annotations/, else sub-folders)."""
    for sub in ("JPEGImages", "Annotations"):
        if (root / sub).is_dir():
            return sorted(p.name for p in (root / sub).iterdir() if p.is_dir())
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def frame_paths(root: Path, seq: str) -> list[Path]:
    folder = root / "JPEGImages" / seq
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def annotation_dir(root: Path, seq: str) -> Path:
    """Where a sequence's PNGs are: ``root/Annotations/seq`` (dataset) or ``root/seq`` (results)."""
    inside = root / "Annotations" / seq
    return inside if inside.is_dir() or (root / "Annotations").is_dir() else root / seq


def annotation_paths(root: Path, seq: str) -> dict[str, Path]:
    """stem -> PNG path for every annotated frame of ``seq``."""
    folder = annotation_dir(root, seq)
    return {p.stem: p for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
