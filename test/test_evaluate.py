"""Evaluation on hand-made cases: folders and bags, alignment, dropped frames, averaging, outputs."""

import csv
import json

import numpy as np
import pytest

from hqsmem_ros.core import davis_io
from hqsmem_ros.core.metrics import boundary_f
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.tools import bags, evaluate

SHAPE = (10, 10)


def rect(y0, y1, x0, x1):
    m = np.zeros(SHAPE, bool)
    m[y0:y1, x0:x1] = True
    return m


EMPTY = np.zeros(SHAPE, bool)
GT = rect(0, 2, 0, 5)  # 10 px
# frame 0 initialises; then: IoU 0.8, IoU 0.5, reported absent, disjoint, both absent, false alarm
GT_FRAMES = [GT, GT, GT, GT, GT, EMPTY, EMPTY]
PRED_FRAMES = [GT, rect(0, 2, 0, 4), rect(0, 1, 0, 5), EMPTY, rect(6, 8, 0, 5), EMPTY, rect(6, 8, 0, 5)]
EXPECTED = {"J": (0.8 + 0.5 + 0 + 0 + 1 + 0) / 6, "Q": (0.8 + 0.5 + 0 + 0 + 1 + 0) / 6,
            "Acc": (0.8 + 0.5 + 0) / 3, "Rob": 2 / 4, "NRE": 1 / 4, "DRE": 1 / 4, "ADQ": 1 / 2,
            "F": np.mean([boundary_f(p, g) for p, g in zip(PRED_FRAMES[1:], GT_FRAMES[1:])])}


def write_folder(root, seq, frames, oid=1):
    for i, m in enumerate(frames):
        davis_io.write_label_png(root / "Annotations" / seq / f"{i:05d}.png", m.astype(np.uint16) * oid)


def write_gt_bag(path, frames):
    with bags.BagWriter(path, "mcap") as bag:
        for i, m in enumerate(frames):
            bag.write_msg("image", bags.image_msg(np.zeros(SHAPE + (3,), np.uint8), 100 + i), 100 + i)
            bag.write_msg("ground_truth", bags.tracks_msg({1: m}, 100 + i, i), 100 + i)


def write_pred_bag(path, frames, skip=()):
    with bags.BagWriter(path, "sqlite3") as bag:
        for i, m in enumerate(frames):
            if i not in skip:
                bag.write_msg("tracks/label_image", bags.label_image_msg(m.astype(np.uint16), 100 + i), 100 + i)


def check(row, expected):
    for key, value in expected.items():
        assert row[key] == pytest.approx(value), key
    assert row["J&F"] == pytest.approx((row["J"] + row["F"]) / 2)


def test_hand_made_sequence_from_folders(tmp_path):
    write_folder(tmp_path / "gt", "s", GT_FRAMES)
    write_folder(tmp_path / "pred", "s", PRED_FRAMES)
    report = evaluate.evaluate(evaluate.FolderSource(tmp_path / "gt"), evaluate.FolderSource(tmp_path / "pred"))
    (obj,) = report.objects
    assert obj.frames == [1, 2, 3, 4, 5, 6]  # the initialisation frame is not scored
    assert obj.j == pytest.approx([0.8, 0.5, 0, 0, 1, 0])
    check(report.rows()[0], EXPECTED)
    check(report.overall, EXPECTED)


def test_bags_give_the_same_numbers_and_a_dropped_frame_counts_as_absent(tmp_path):
    write_gt_bag(tmp_path / "gt", GT_FRAMES)
    write_pred_bag(tmp_path / "pred", PRED_FRAMES)
    gt = evaluate.open_source(tmp_path / "gt", None, evaluate.GT_TOPICS)
    check(evaluate.evaluate(gt, evaluate.open_source(tmp_path / "pred", None, evaluate.PRED_TOPICS)).overall,
          EXPECTED)
    write_pred_bag(tmp_path / "dropped", PRED_FRAMES, skip={1})  # the IoU-0.8 frame never came back
    report = evaluate.evaluate(gt, evaluate.open_source(tmp_path / "dropped", None, evaluate.PRED_TOPICS))
    assert report.overall["Q"] == pytest.approx((0.5 + 0 + 0 + 1 + 0) / 6)
    assert report.overall["NRE"] == pytest.approx(2 / 4)


def test_overall_is_a_mean_over_objects_not_sequences(tmp_path):
    write_folder(tmp_path / "gt", "a", [GT, GT])
    write_folder(tmp_path / "pred", "a", [GT, GT])                      # object 1 of a: J 1
    labels = [davis_io.masks_to_labels({1: GT, 2: rect(5, 9, 5, 9)}, SHAPE)] * 2
    for i, lab in enumerate(labels):
        davis_io.write_label_png(tmp_path / "gt" / "Annotations" / "b" / f"{i:05d}.png", lab)
    write_folder(tmp_path / "pred", "b", [GT, GT])                      # b: object 1 J 1, object 2 missed
    report = evaluate.evaluate(evaluate.FolderSource(tmp_path / "gt"), evaluate.FolderSource(tmp_path / "pred"))
    rows = {r["sequence"]: r for r in report.rows()}
    assert rows["a"]["J"] == 1.0 and rows["b"]["J"] == 0.5
    assert rows["overall"]["J"] == pytest.approx(2 / 3) and rows["overall"]["objects"] == 3


def test_command_line_writes_csv_and_json(tmp_path, capsys):
    write_folder(tmp_path / "gt", "s", GT_FRAMES)
    write_folder(tmp_path / "pred", "s", PRED_FRAMES)
    assert evaluate.main(["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                          "--csv", str(tmp_path / "t.csv"), "--json", str(tmp_path / "t.json")]) == 0
    assert "overall" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [r["sequence"] for r in rows] == ["s", "overall"]
    assert float(rows[1]["Q"]) == pytest.approx(EXPECTED["Q"])
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["per_frame"][0]["j"] == pytest.approx([0.8, 0.5, 0, 0, 1, 0])
    write_folder(tmp_path / "gt2", "s", [GT, GT])
    write_folder(tmp_path / "pred2", "s", [GT, GT])
    assert evaluate.main(["--gt", str(tmp_path / "gt2"), "--pred", str(tmp_path / "pred2"),
                          "--json", str(tmp_path / "u.json")]) == 0
    assert json.loads((tmp_path / "u.json").read_text())["rows"][0]["ADQ"] is None  # never absent: undefined


def test_missing_topic_is_reported(tmp_path, capsys):
    write_pred_bag(tmp_path / "pred", PRED_FRAMES)
    assert evaluate.main(["--gt", str(tmp_path / "pred"), "--pred", str(tmp_path / "pred")]) == 2
    assert "ground_truth" in capsys.readouterr().err


def test_folder_ground_truth_against_bag_predictions_matches_by_frame_order(tmp_path):
    write_folder(tmp_path / "gt", "s", GT_FRAMES)
    write_pred_bag(tmp_path / "pred", PRED_FRAMES)
    report = evaluate.evaluate(evaluate.FolderSource(tmp_path / "gt"),
                               evaluate.open_source(tmp_path / "pred", None, evaluate.PRED_TOPICS))
    check(report.overall, EXPECTED)


# -- 3D centroids ----------------------------------------------------------------------------------
def test_centroid_errors_and_summary_in_metres_and_percent_of_range():
    truth = {1: np.array([0.0, 0.0, 2.0]), 2: np.array([3.0, 0.0, 4.0]), 3: None, 4: np.array([0.0, 0.0, 1.0])}
    pred = {1: np.array([0.0, 0.02, 2.0]), 2: np.array([3.0, 0.0, 4.1]), 3: np.array([0.0, 0.0, 1.0])}
    errors = evaluate.centroid_errors(truth, pred)
    assert set(errors) == {1, 2}  # 3: no truth (hidden); 4: no prediction
    assert errors[1] == pytest.approx((0.02, 2.0)) and errors[2] == pytest.approx((0.1, 5.0))
    samples = [(*errors[1], 0.9), (*errors[2], 0.85), (1.0, 2.0, 0.5)]  # the last one's J is below 0.8
    summary = evaluate.centroid_summary(samples)
    assert summary["3D_med"] == pytest.approx(0.06) and summary["3D_med%"] == pytest.approx(1.5)
    assert summary["3D_p90"] == pytest.approx(0.02 + 0.9 * 0.08) and summary["3D_p90%"] == pytest.approx(1.9)
    assert all(np.isnan(v) for v in evaluate.centroid_summary(samples, min_j=0.95).values())


def test_bags_with_depth_report_3d_error_of_estimates_on_true_and_perturbed_masks(tmp_path):
    from hqsmem_ros.core.depth import depth_metres, object_3d
    from hqsmem_ros.tools.benchmark_depth import perturbed
    from hqsmem_ros.tools.sample_bag import write_sample_bag

    gt_bag = write_sample_bag(tmp_path / "gt", "occlusion", frames=6, size=(120, 160), depth=True)
    types = bags.topic_types(gt_bag)
    assert types["depth"] == bags.IMAGE and types["camera_info"] == "sensor_msgs/msg/CameraInfo"
    gt = evaluate.open_source(gt_bag, None, evaluate.GT_TOPICS)
    seq = make_sequence("occlusion", n_frames=6, size=(120, 160))
    depth_msgs = [m.decode() for m in bags.read(gt_bag, ["depth"])]
    info = next(bags.read(gt_bag, ["camera_info"])).decode()
    assert [bags.stamp_ns(d.header) for d in depth_msgs] == gt.frames(gt_bag.name)  # the images' stamps
    assert info.k[0] == pytest.approx(seq.intrinsics.fx) and (info.height, info.width) == (120, 160)
    rows = {}
    for name, change in (("true", lambda m: m), ("dilated", lambda m: perturbed(m, True))):
        with bags.BagWriter(tmp_path / name) as bag:
            for i, (stamp, d) in enumerate(zip(gt.frames(gt_bag.name), depth_msgs)):
                depth = depth_metres(bags.mono(d), d.encoding)  # the 16UC1 millimetres a node would read
                masks = {oid: change(m) for oid, m in seq.frame(i)[1].items()}
                estimates = {oid: object_3d(depth, m, seq.intrinsics) for oid, m in masks.items()}
                positions = {oid: e.centroid if e.valid else None for oid, e in estimates.items()}
                bag.write_msg("tracks", bags.tracks_msg(masks, stamp, i, positions=positions), stamp)
        report = evaluate.evaluate(gt, evaluate.open_source(tmp_path / name, None, evaluate.PRED_TOPICS))
        row = rows[name] = report.overall
        assert report.has_3d and "3D_med%" in report.table()
        assert row["J"] > (0.99 if name == "true" else 0.8)
        assert row["3D_med%"] < 2.0 and row["3D_p90"] < 0.1, (name, row)
    named = evaluate.evaluate(gt, evaluate.open_source(tmp_path / "true", "tracks", ()))  # topic named, no image
    assert named.overall["3D_med"] == rows["true"]["3D_med"]
    assert evaluate.evaluate(gt, gt).overall["3D_med"] == 0.0  # the truth against itself
