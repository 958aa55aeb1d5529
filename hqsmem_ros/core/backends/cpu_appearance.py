"""Per-object appearance memory of the CPU backend and what it is used for: a foreground/background
score for every feature cell, and re-detection of an absent object anywhere in the frame.

Each memory entry (the reference frame or a key frame that SmartMemory keeps) holds, per object, a
bounded sample of the object's cell features (foreground) and of the cells around and away from it
(background, which includes the other objects). A cell scores high when its nearest foreground cells
are closer than its nearest background cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class ScoreParams:
    top_k: int                 # nearest memory cells averaged per score
    novel_similarity: float    # background score floor: content unlike both banks counts as background
    temperature: float         # logit = (fg - bg) / temperature


@dataclass
class _Entry:
    fg: torch.Tensor  # (n, C)
    bg: torch.Tensor  # (m, C)
    size: float       # the object's area in cells on that frame


def _evenly(indices: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``indices``, spread evenly (deterministic, covers the whole set)."""
    if indices.size <= n:
        return indices
    return indices[np.linspace(0, indices.size - 1, n).round().astype(int)]


class ObjectAppearance:
    def __init__(self):
        self.entries: dict[int, _Entry] = {}
        self._banks: tuple[torch.Tensor, torch.Tensor] | None = None  # concatenation cache

    def store(self, key: int, cells: torch.Tensor, coverage: np.ndarray, fg_cap: int, bg_cap: int,
              verify: ScoreParams | None = None) -> bool:
        """Record entry ``key`` from a frame's (rows*cols, C) ``cells`` and this object's cell
        ``coverage`` (rows, cols); False when the object covers no cell well enough to describe it.
        With ``verify``, only cells that the memory held so far already agrees with are taken: foreground
        cells it calls foreground, background cells it calls background. So a mask that slipped onto an
        occluder does not teach the memory the occluder, and a mask that lost part of the object does not
        teach it that part as background (which would make the features veto it: drift)."""
        flat = coverage.ravel()
        fg = np.flatnonzero(flat >= 0.75)
        if fg.size == 0 and flat.max() >= 0.3:  # a small object: its best-covered cells
            fg = np.flatnonzero(flat >= 0.8 * flat.max())
        if fg.size == 0:
            return False
        # The cells just outside the object see some of it (receptive field) yet are not it: keeping them
        # as background is what stops the features from growing the mask into its surroundings.
        outside = flat <= 0.1
        ring = cv2.dilate((coverage > 0.1).astype(np.uint8), np.ones((9, 9), np.uint8)).ravel() > 0
        near = np.flatnonzero(outside & ring)
        far = np.flatnonzero(outside & ~ring)
        near = _evenly(near, bg_cap // 2)
        bg = np.concatenate([near, _evenly(far, bg_cap - near.size)])
        if verify is not None and self.entries:
            logit = self.scores(cells[np.concatenate([fg, bg])], verify)[1]
            fg, bg = fg[logit[:fg.size] > 0], bg[logit[fg.size:] < 0]
            if fg.size == 0:
                return False
        self.entries[key] = _Entry(cells[_evenly(fg, fg_cap)].clone(), cells[bg].clone(), float(flat.sum()))
        self._banks = None
        return True

    def evict(self, key: int) -> None:
        if self.entries.pop(key, None) is not None:
            self._banks = None

    def largest(self) -> float:
        """The object's largest area (cells) over the entries held."""
        return max((e.size for e in self.entries.values()), default=0.0)

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for e in self.entries.values() for t in (e.fg, e.bg))

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._banks is None:
            self._banks = (torch.cat([e.fg for e in self.entries.values()]),
                           torch.cat([e.bg for e in self.entries.values()]))
        return self._banks

    def scores(self, cells: torch.Tensor, p: ScoreParams) -> tuple[np.ndarray, np.ndarray]:
        """(foreground similarity, logit) per row of ``cells`` (n, C)."""
        fg_bank, bg_bank = self._bank()
        s_fg = _top_k_mean(cells @ fg_bank.T, p.top_k)
        s_bg = _top_k_mean(cells @ bg_bank.T, p.top_k) if len(bg_bank) else torch.full_like(s_fg, -1.0)
        logit = (s_fg - s_bg.clamp(min=p.novel_similarity)) / p.temperature
        return s_fg.numpy(), logit.numpy()


def _top_k_mean(sims: torch.Tensor, k: int) -> torch.Tensor:
    return sims.topk(min(k, sims.shape[1]), dim=1).values.mean(dim=1)


def redetect(s_fg: np.ndarray, logit: np.ndarray, min_cells: float, min_similarity: float) -> np.ndarray | None:
    """The cells (bool grid) of the best candidate for an absent object: a connected region that the
    memory calls foreground, at least ``min_cells`` large, whose mean foreground similarity is the
    highest and reaches ``min_similarity``; None when no region qualifies."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((logit > 0).astype(np.uint8), connectivity=8)
    best, best_sim = None, min_similarity
    for lab in range(1, n):
        if stats[lab, cv2.CC_STAT_AREA] < min_cells:
            continue
        sim = float(s_fg[labels == lab].mean())
        if sim >= best_sim:
            best, best_sim = lab, sim
    return None if best is None else labels == best
