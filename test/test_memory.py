"""SmartMemory pins the equations of docs/method.md (§3, eqs. 10-14) on hand-computed cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hqsmem_ros.core.memory import MemoryConfig, SmartMemory

S2 = 1 / math.sqrt(2)


def memory_with(entries, **cfg):
    mem = SmartMemory(MemoryConfig(**cfg))
    for key, t, e in entries:
        mem.update(key, t, np.array(e, float))
    return mem


def test_scores_match_hand_computed_values():
    mem = memory_with([(1, 1, [1, 0]), (2, 2, [0, 1]), (3, 3, [1, 1])], capacity=3, freshness_weight=0.5)
    scores = mem.scores(10, np.array([1.0, 0.0]))
    rel, fr, s = scores[1]
    assert (rel, fr) == pytest.approx((1.0, 1 / 9))
    assert s == pytest.approx(1.0 * (1 - 0.5 / 9))
    assert scores[2] == pytest.approx((0.0, 1 / 8, 0.0))
    assert scores[3] == pytest.approx((S2, 1 / 7, S2 * (1 - 0.5 / 7)))


def test_full_memory_replaces_the_highest_removal_score_when_relevant():
    mem = memory_with([(1, 1, [1, 0]), (2, 2, [0, 1]), (3, 3, [1, 1])], capacity=3, relevance_threshold=0.5)
    decision = mem.update(10, 10, np.array([1.0, 0.0]))
    assert decision.write and decision.evict == (1,)
    assert sorted(mem.entries) == [2, 3, 10]


def test_full_memory_skips_a_frame_unlike_every_key_frame():
    mem = memory_with([(1, 1, [1, 0]), (2, 2, [0, 1]), (3, 3, [1, 1])], capacity=3, relevance_threshold=0.5)
    # e_t = -x: S = (-0.944, 0, -0.657) -> candidate 2 with Rel 0 < tau: memory unchanged.
    decision = mem.update(10, 10, np.array([-1.0, 0.0]))
    assert not decision.write and decision.evict == ()
    assert sorted(mem.entries) == [1, 2, 3]


def test_freshness_protects_the_newer_of_two_equally_relevant_frames():
    mem = memory_with([(1, 1, [1, 0]), (8, 8, [1, 0])], capacity=2, freshness_weight=1.0)
    scores = mem.scores(9, np.array([1.0, 0.0]))
    assert scores[1][2] == pytest.approx(1 - 1 / 8) and scores[8][2] == pytest.approx(0.0)
    assert mem.update(9, 9, np.array([1.0, 0.0])).evict == (1,)


def test_without_freshness_relevance_alone_decides():
    mem = memory_with([(1, 1, [1, 0]), (8, 8, [S2, S2])], capacity=2, freshness_weight=0.0)
    assert mem.update(9, 9, np.array([0.0, 1.0])).evict == (8,)


def test_not_full_memory_always_writes():
    mem = memory_with([(1, 1, [1, 0])], capacity=3, relevance_threshold=0.99)
    assert mem.update(2, 2, np.array([-1.0, 0.0])).write
    assert len(mem) == 2


def test_pinned_reference_frames_are_never_removal_candidates():
    mem = SmartMemory(MemoryConfig(capacity=1, relevance_threshold=-1.0))
    mem.pin(0, 0, np.array([1.0, 0.0]), owner=7)
    for t in range(1, 20):
        mem.update(t, t, np.array([1.0, 0.0]))
        assert 0 in mem.entries and len(mem) == 2
    assert 0 not in mem.scores(20, np.array([1.0, 0.0]))


def test_release_unpins_only_when_the_last_owner_goes():
    mem = SmartMemory()
    mem.pin(0, 0, np.ones(2), owner=1)
    mem.pin(0, 0, np.ones(2), owner=2)
    assert mem.release(1) == [] and mem.entries[0].pinned
    assert mem.release(2) == [0] and 0 not in mem.entries


def test_fifo_evicts_the_oldest():
    mem = memory_with([(k, k, [1, 0]) for k in (1, 2, 3)], capacity=3, policy="fifo")
    assert mem.update(4, 4, np.array([0.0, 1.0])).evict == (1,)
    assert sorted(mem.entries) == [2, 3, 4]


def test_reference_only_keeps_nothing_but_pinned_frames():
    mem = SmartMemory(MemoryConfig(policy="reference_only"))
    mem.pin(0, 0, np.ones(2), owner=1)
    for t in range(1, 10):
        assert not mem.update(t, t, np.ones(2)).write
    assert list(mem.entries) == [0]


def test_lowering_capacity_sheds_the_excess_at_the_next_update():
    mem = memory_with([(k, k, [1, k]) for k in range(1, 7)], capacity=6)
    mem.config = MemoryConfig(capacity=2, relevance_threshold=-1.0)
    mem.update(7, 7, np.array([1.0, 3.0]))
    assert len(mem) == 2


def test_zero_embedding_is_unlike_everything():
    mem = memory_with([(1, 1, [1, 0])], capacity=1, relevance_threshold=0.1)
    assert not mem.update(2, 2, np.zeros(2)).write


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.sampled_from(["smart", "fifo", "reference_only"]), st.floats(-1, 1), st.floats(0, 1),
       st.lists(st.tuples(st.integers(0, 3), st.lists(st.floats(-1, 1), min_size=3, max_size=3)),
                min_size=1, max_size=120))
def test_size_never_exceeds_capacity_plus_pinned(k, policy, tau, lam, frames):
    mem = SmartMemory(MemoryConfig(policy=policy, capacity=k, relevance_threshold=tau, freshness_weight=lam))
    for t, (owner_event, e) in enumerate(frames):
        if owner_event == 0:
            mem.pin(t, t, np.array(e), owner=t % 3)
        elif owner_event == 1:
            mem.release(t % 3)
        else:
            mem.update(t, t, np.array(e))
        pinned = sum(entry.pinned for entry in mem.entries.values())
        assert len(mem) <= k + pinned
