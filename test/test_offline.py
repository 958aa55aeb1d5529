"""The offline runner: DAVIS / YouTube-VOS folders, bags and videos in, DAVIS-layout masks out."""

import cv2
import numpy as np
import pytest

from hqsmem_ros.core import davis_io
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.core.session import TrackingSession
from hqsmem_ros.core.tracker import HQSMemConfig
from hqsmem_ros.core.types import FrameResult, ObjectResult, Target, mask_box
from hqsmem_ros.tools import bags, offline
from hqsmem_ros.tools.evaluate import FolderSource, evaluate


class RecordingTracker:
    """Stands in for HQSMemTracker: remembers what it was given, repeats each object's initial mask."""

    config = HQSMemConfig()
    consecutive_faults = 0

    def __init__(self):
        self.calls = []
        self.masks = {}

    @property
    def object_ids(self):
        return list(self.masks)

    def reset(self):
        self.masks = {}

    def process(self, frame, targets=()):
        self.calls.append((frame.shape, [(t.obj_id, t.box, t.mask is not None) for t in targets]))
        for t in targets:
            mask = t.mask if t.mask is not None else np.zeros(frame.shape[:2], bool)
            if t.mask is None:
                x0, y0, x1, y1 = t.box
                mask[y0:y1, x0:x1] = True
            self.masks[t.obj_id] = mask
        objects = [ObjectResult(o, "", True, 1.0, m, mask_box(m)) for o, m in self.masks.items()]
        return FrameResult(len(self.calls) - 1, objects, memory_frames=len(self.masks))


def write_davis(root, seq, frames, annotated):
    """frames: list of (rgb, {id: mask}); annotated: which frame indices get an annotation PNG."""
    for i, (rgb, masks) in enumerate(frames):
        path = root / "JPEGImages" / seq / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if i in annotated:
            davis_io.write_label_png(root / "Annotations" / seq / f"{i:05d}.png",
                                     davis_io.masks_to_labels(masks, rgb.shape[:2]))


def test_label_png_round_trip_keeps_ids_and_palette(tmp_path):
    labels = np.zeros((5, 7), np.uint16)
    labels[1:3, 2:5] = 1
    labels[4, :] = 17
    davis_io.write_label_png(tmp_path / "a.png", labels)
    assert np.array_equal(davis_io.read_label_png(tmp_path / "a.png"), labels)
    assert davis_io.PALETTE[3:6] == [128, 0, 0] and davis_io.PALETTE[6:9] == [0, 128, 0]  # DAVIS colours
    with pytest.raises(ValueError):
        davis_io.write_label_png(tmp_path / "b.png", labels * 20)


def test_davis_folder_with_the_cpu_backend(tmp_path):
    seq = make_sequence("translation", n_frames=6, size=(120, 160))
    frames = [seq.frame(i) for i in range(len(seq))]
    write_davis(tmp_path / "data", "clip", frames, annotated=range(6))
    assert offline.main([str(tmp_path / "data"), "--out", str(tmp_path / "res"), "--backend", "cpu"]) == 0
    written = sorted(p.name for p in (tmp_path / "res" / "Annotations" / "clip").iterdir())
    assert written == [f"{i:05d}.png" for i in range(6)]
    first = davis_io.read_label_png(tmp_path / "res" / "Annotations" / "clip" / "00000.png")
    assert set(np.unique(first)) == {0, *seq.object_ids}  # every object initialised from frame 0's PNG
    report = evaluate(FolderSource(tmp_path / "data"), FolderSource(tmp_path / "res"))
    assert len(report.objects) == len(seq.object_ids)
    assert report.overall["J"] > 0.5, report.table()


def test_youtube_vos_objects_start_where_they_first_appear(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    a, b = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    a[2:6, 2:6] = True
    b[10:15, 10:20] = True
    frames = [(rgb, {1: a})] * 3 + [(rgb, {1: a, 2: b})] * 3
    write_davis(tmp_path, "yt", frames, annotated={0, 3})
    tracker = RecordingTracker()
    (clip,) = offline.davis_clips(tmp_path)
    stats = offline.run_clip(TrackingSession(tracker), clip, tmp_path / "out")
    assert stats.frames == 6 and stats.max_memory_frames == 2
    assert [ids for _, ids in tracker.calls] == [[(1, None, True)], [], [], [(2, None, True)], [], []]
    out = davis_io.read_label_png(tmp_path / "out" / "Annotations" / "yt" / "00004.png")
    assert np.array_equal(out == 2, b) and np.array_equal(out == 1, a)


def test_bag_targets_start_on_the_frame_they_name(tmp_path):
    with bags.BagWriter(tmp_path / "bag", "sqlite3") as bag:
        for i in range(5):
            stamp = 1_000 + i
            if i == 3:  # zero stamp: "the next frame", i.e. frame 3
                bag.write_msg("targets", bags.targets_msg([Target(6, "", (0, 0, 3, 3))], 0), stamp)
            bag.write_msg("image", bags.image_msg(np.zeros((10, 12, 3), np.uint8), stamp), stamp)
            if i == 1:  # stored after frame 1 but naming frame 2's stamp
                bag.write_msg("targets", bags.targets_msg([Target(5, "", (1, 2, 6, 8))], 1_002), stamp)
    tracker = RecordingTracker()
    (clip,) = offline.open_clips(tmp_path / "bag")
    offline.run_clip(TrackingSession(tracker), clip, None)
    assert [ids for _, ids in tracker.calls] == [[], [], [(5, (1, 2, 6, 8), False)], [(6, (0, 0, 3, 3), False)], []]


def test_video_with_a_targets_file(tmp_path):
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(7):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    (tmp_path / "t.json").write_text('{"targets": [{"id": 3, "label": "x", "box": [4, 5, 20, 30]}]}')
    tracker = RecordingTracker()
    (clip,) = offline.open_clips(video, tmp_path / "t.json")
    stats = offline.run_clip(TrackingSession(tracker), clip, tmp_path / "out")
    assert stats.frames == 7 and tracker.calls[0] == ((48, 64, 3), [(3, (4, 5, 20, 30), False)])
    assert len(list((tmp_path / "out" / "Annotations" / "v").glob("*.png"))) == 7
    with pytest.raises(ValueError, match="needs --targets"):
        list(offline.open_clips(video))


def test_targets_files(tmp_path):
    from hqsmem_ros.tools.targets_file import load_targets
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 1:3] = 2
    labels[4:6, 5:8] = 9
    davis_io.write_label_png(tmp_path / "first.png", labels)
    by_id = {t.obj_id: t for t in load_targets(tmp_path / "first.png")}
    assert sorted(by_id) == [2, 9] and np.array_equal(by_id[9].mask, labels == 9) and by_id[9].box is None
    (tmp_path / "t.yaml").write_text("targets:\n  - {id: 4, box: [1, 2, 3, 4]}\n"
                                     "  - {id: 5, label: cup, mask: first.png}\n")
    four, five = load_targets(tmp_path / "t.yaml")
    assert (four.obj_id, four.box, four.mask) == (4, (1.0, 2.0, 3.0, 4.0), None)
    assert (five.label, five.box) == ("cup", None) and np.array_equal(five.mask, labels > 0)
    (tmp_path / "bad.yaml").write_text("3: [1, 2, 3]\n")
    with pytest.raises(ValueError, match="box must be"):
        load_targets(tmp_path / "bad.yaml")
