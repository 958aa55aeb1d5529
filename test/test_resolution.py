"""core.resolution.ResolutionGate: stray frames of another size are refused, a persistent size is taken."""

from hqsmem_ros.core.resolution import ResolutionGate, Verdict


def test_the_first_frame_sets_the_size_and_a_stray_frame_is_refused():
    gate = ResolutionGate(3)
    assert gate.observe((480, 640)) is Verdict.SAME and gate.size == (480, 640)
    assert gate.observe((1, 1)) is Verdict.MISMATCH
    assert gate.observe((480, 640)) is Verdict.SAME


def test_a_new_size_is_taken_after_that_many_frames_in_a_row_only():
    gate = ResolutionGate(3)
    gate.observe((480, 640))
    alternating = [gate.observe(s) for s in [(240, 320), (480, 640)] * 10]
    assert Verdict.CHANGED not in alternating and gate.size == (480, 640)  # a second camera never takes over
    assert [gate.observe((240, 320)) for _ in range(3)] == [Verdict.MISMATCH, Verdict.MISMATCH, Verdict.CHANGED]
    assert gate.size == (240, 320) and gate.observe((240, 320)) is Verdict.SAME
    mixed = [gate.observe(s) for s in [(10, 10), (20, 20), (10, 10), (20, 20)]]  # two strays never add up
    assert mixed == [Verdict.MISMATCH] * 4 and gate.size == (240, 320)


def test_one_frame_means_every_change_is_taken_at_once_and_reset_forgets_the_size():
    gate = ResolutionGate(1)
    gate.observe((4, 4))
    assert gate.observe((8, 8)) is Verdict.CHANGED
    gate.reset()
    assert gate.size is None and gate.observe((2, 2)) is Verdict.SAME
