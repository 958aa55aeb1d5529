"""Smart memory (S-Mem): which key frames the base model keeps, per docs/method.md §3.

The policy only decides; the backend owns the memory tensors and is told what to write and evict.
Keys are frame indices. Reference (initialisation) frames are pinned: never chosen for removal,
released when the last object that owns them is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import param

POLICIES = ("smart", "fifo", "reference_only")


@dataclass(frozen=True)
class MemoryConfig:
    policy: str = param("smart", "Key-frame policy: smart (relevance/freshness, the method), fifo (drop the oldest), "
                        "reference_only (keep only the pinned reference frames)", choices=POLICIES, dynamic=True)
    capacity: int = param(6, "K: most non-pinned key frames held", min=1, max=256, dynamic=True)
    relevance_threshold: float = param(0.5, "tau: a full memory takes the current frame only if the removal "
                                       "candidate's relevance reaches this", min=-1.0, max=1.0, dynamic=True)
    freshness_weight: float = param(0.5, "lambda in S_i = Rel_i * (1 - lambda * Fr_i)", min=0.0, max=1.0,
                                    dynamic=True)
    update_every: int = param(5, "Frames between memory updates (the base model's memory gap)", min=1,
                              max=1000, dynamic=True)


@dataclass
class MemoryEntry:
    key: int
    t: int
    embedding: np.ndarray
    owners: set[int] = field(default_factory=set)  # objects whose reference frame this is (pinned if any)

    @property
    def pinned(self) -> bool:
        return bool(self.owners)


@dataclass(frozen=True)
class MemoryDecision:
    write: bool
    evict: tuple[int, ...] = ()
    reason: str = ""


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).ravel()
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


class SmartMemory:
    def __init__(self, config: MemoryConfig = MemoryConfig()):
        self.config = config
        self.entries: dict[int, MemoryEntry] = {}

    # -- bookkeeping -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def removable(self) -> list[MemoryEntry]:
        return [e for e in self.entries.values() if not e.pinned]

    def pin(self, key: int, t: int, embedding: np.ndarray, owner: int) -> None:
        """Record ``key`` as ``owner``'s reference frame (adds the entry if it is new)."""
        entry = self.entries.setdefault(key, MemoryEntry(key, t, _unit(embedding)))
        entry.owners.add(owner)

    def release(self, owner: int) -> list[int]:
        """Forget ``owner``; returns the keys that no object pins any more (the caller evicts them)."""
        freed = []
        for entry in list(self.entries.values()):
            if owner in entry.owners:
                entry.owners.discard(owner)
                if not entry.owners:
                    freed.append(entry.key)
                    del self.entries[entry.key]
        return freed

    def clear(self) -> None:
        self.entries.clear()

    # -- the equations ------------------------------------------------------------------------
    def scores(self, t: int, embedding: np.ndarray) -> dict[int, tuple[float, float, float]]:
        """(Rel_i, Fr_i, S_i) per removable entry at frame ``t`` (docs/method.md, eqs. 10-12)."""
        e_t = _unit(embedding)
        lam = self.config.freshness_weight
        out = {}
        for e in self.removable:
            rel = float(e.embedding @ e_t)
            fr = 1.0 / max(t - e.t, 1)
            out[e.key] = (rel, fr, rel * (1.0 - lam * fr))
        return out

    def decide(self, t: int, embedding: np.ndarray) -> MemoryDecision:
        """What to do with frame ``t`` (docs/method.md, eqs. 13-14), without changing anything."""
        cfg = self.config
        if cfg.policy == "reference_only":
            return MemoryDecision(False, tuple(e.key for e in self.removable), "reference_only policy")
        removable = self.removable
        if cfg.policy == "fifo":
            oldest = sorted(removable, key=lambda e: e.t)
            excess = len(removable) + 1 - cfg.capacity
            return MemoryDecision(True, tuple(e.key for e in oldest[:max(excess, 0)]), "fifo")
        if len(removable) < cfg.capacity:
            return MemoryDecision(True, (), "memory not full")
        scores = self.scores(t, embedding)
        ranked = sorted(scores, key=lambda k: scores[k][2], reverse=True)
        # A capacity lowered at run time leaves more than K entries: shed the extra first.
        excess = tuple(ranked[:len(removable) - cfg.capacity])
        r = ranked[len(excess)]
        rel_r = scores[r][0]
        if rel_r >= cfg.relevance_threshold:
            return MemoryDecision(True, excess + (r,), f"replace {r} (Rel={rel_r:.3f})")
        return MemoryDecision(False, excess, f"unlike every key frame (Rel_r={rel_r:.3f} < tau)")

    def apply(self, decision: MemoryDecision, key: int, t: int, embedding: np.ndarray) -> None:
        for k in decision.evict:
            del self.entries[k]
        if decision.write:
            self.entries[key] = MemoryEntry(key, t, _unit(embedding))

    def update(self, key: int, t: int, embedding: np.ndarray) -> MemoryDecision:
        decision = self.decide(t, embedding)
        self.apply(decision, key, t, embedding)
        return decision
