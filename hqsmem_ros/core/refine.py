"""Steps 2-3 of the method: mask proposals from a box prompt, verified by appearance features.

``VerifiedRefiner`` holds the logic; a ``Proposer`` (SAM-HQ) and a ``Verifier`` (DINO) plug into it,
on ``hqsmem.device`` (a GPU, or the CPU); the CPU backend runs without a refiner. The refiner never
touches memory: it returns the accepted mask per object and the tracker feeds that back (teacher
forcing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .config import param
from .types import Box, Frame, mask_box


@dataclass(frozen=True)
class RefinerConfig:
    enabled: bool = param(True, "Refine base-model masks with box-prompted proposals (step 2)", dynamic=True)
    verify: bool = param(True, "Accept a proposal only if its appearance matches the base mask (step 3); "
                         "off = take the proposer's top-scoring mask (the paper's 'naive SAM' ablation)",
                         dynamic=True)
    similarity_threshold: float = param(0.8, "delta: least cosine similarity between the base mask's and the "
                                        "best proposal's features for the proposal to be accepted",
                                        min=-1.0, max=1.0, dynamic=True)
    box_margin: float = param(0.1, "Box prompt margin, as a fraction of the box size on each side",
                              min=0.0, max=1.0, dynamic=True)


@dataclass
class Refinement:
    mask: np.ndarray
    accepted: bool
    similarity: float


class Proposer(Protocol):
    def propose(self, frame: Frame, boxes: dict[int, Box]) -> dict[int, list[np.ndarray]]:
        """Candidate masks per object, best first by the proposer's own score."""


class Verifier(Protocol):
    def features(self, frame: Frame, masks: list[np.ndarray]) -> np.ndarray:
        """(len(masks), D) L2-normalised appearance features of each mask region."""


def expand_box(box: Box, margin: float, shape: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(w, int(np.ceil(x1 + dx))), min(h, int(np.ceil(y1 + dy))))


class VerifiedRefiner:
    def __init__(self, proposer: Proposer, verifier: Verifier, config: RefinerConfig = RefinerConfig()):
        self.proposer = proposer
        self.verifier = verifier
        self.config = config

    def refine(self, frame: Frame, masks: dict[int, np.ndarray],
               boxes: dict[int, Box] | None = None) -> dict[int, Refinement]:
        """Per object, the accepted mask; ``boxes`` are the prompts (default: each mask's box widened by
        ``box_margin``)."""
        cfg = self.config
        if boxes is None:
            boxes = {oid: expand_box(b, cfg.box_margin, frame.hw)
                     for oid, m in masks.items() if (b := mask_box(m)) is not None}
        if not cfg.enabled or not boxes:
            return {oid: Refinement(m, False, float("nan")) for oid, m in masks.items()}
        proposals = self.proposer.propose(frame, boxes)
        out = {oid: Refinement(m, False, float("nan")) for oid, m in masks.items()}
        if not cfg.verify:
            for oid, cands in proposals.items():
                if cands:
                    out[oid] = Refinement(cands[0], True, float("nan"))
            return out
        # One batched feature pass: each base mask followed by its candidates.
        order, batch = [], []
        for oid, cands in proposals.items():
            if cands:
                order.append((oid, len(cands)))
                batch += [masks[oid], *cands]
        if not batch:
            return out
        feats = self.verifier.features(frame, batch)
        i = 0
        for oid, n in order:
            base, cand = feats[i], feats[i + 1:i + 1 + n]
            sims = cand @ base
            k = int(np.argmax(sims))
            if sims[k] >= cfg.similarity_threshold:
                out[oid] = Refinement(proposals[oid][k], True, float(sims[k]))
            else:
                out[oid] = Refinement(masks[oid], False, float(sims[k]))
            i += 1 + n
        return out
