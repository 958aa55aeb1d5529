"""The node and the offline runner share one TrackingSession: on the same frames and targets they give the
same masks, bit for bit. The node runs as its own process (real CPU backend), fed over DDS in lockstep."""

from __future__ import annotations

import numpy as np
from dds_helpers import full_mask

from hqsmem_ros.core.config import from_flat
from hqsmem_ros.core.factory import Settings, build_tracker
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.core.session import TrackingSession
from hqsmem_ros.core.types import Target
from hqsmem_ros.ros.params import image_qos_override
from hqsmem_ros.tools.offline import Clip, run_clip

NS = 1_000_000_000
SIZE = (120, 160)
PARAMS = {"backend": "cpu", "cpu.work_short_side": 96}
N = 14


def inputs():
    """(frame, targets) per frame: the sequence's targets on frame 0; on frame 7 object 1 restarts from a
    box (GrabCut) and object 3's box lies outside the image (refused in both)."""
    seq = make_sequence("occlusion", n_frames=N, size=SIZE, n_objects=2)
    box_1 = Target(1, "again", box=(20.0, 20.0, 70.0, 80.0))
    outside = Target(3, box=(400.0, 10.0, 500.0, 50.0))
    return [(seq.frame(i)[0], seq.targets() if i == 0 else [box_1, outside] if i == 7 else []) for i in range(N)]


def test_node_and_offline_runner_give_identical_masks(node_process, probe):
    frames = inputs()
    results = []
    session = TrackingSession(build_tracker(from_flat(Settings(), PARAMS))[0])
    stats = run_clip(session, Clip("seq", ((f"{i:05d}", rgb, t) for i, (rgb, t) in enumerate(frames)), N), None,
                     on_result=lambda stem, rgb, result: results.append(result))
    assert len(results) == N and sum("lies outside" in line for line in stats.rejected) == 1

    node = node_process(*(f"{k}:={v}" for k, v in PARAMS.items()), image_qos_override("reliability", "reliable"))
    probe.connect(timeout=60)
    for i, (rgb, targets) in enumerate(frames):
        stamp = (i + 1) * NS // 30
        if targets:
            probe.send_targets(targets, stamp)
        probe.publish_frame(rgb, stamp)
        msg = probe.wait_tracks(i + 1, timeout=30)[-1]
        offline = {o.obj_id: o for o in results[i].objects}
        assert [o.id for o in msg.objects] == list(offline), i
        for obj in msg.objects:
            mine = offline[obj.id]
            assert (obj.present, obj.label) == (mine.present, mine.label), (i, obj.id)
            assert np.array_equal(full_mask(obj, SIZE), mine.mask), (i, obj.id)
    assert any(o.label == "again" for o in results[-1].objects)
    probe.wait_log("rejected target 3: box (400.0, 10.0, 500.0, 50.0) lies outside the 160x120 image")
    assert node.stop() == 0
