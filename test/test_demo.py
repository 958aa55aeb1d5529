"""The demo command end to end on a short sample: node subprocess, lockstep replay, scores, video, plot."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "hqsmem_ros.tools.demo", "--out", str(out), "--frames", "20", "--size", "320x240",
           "--backend", "cpu", "--no-progress", "--domain-id", os.environ.get("ROS_DOMAIN_ID", "0")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_in"], summary["processed"], summary["dropped"]) == (20, 20, 0)
    assert summary["fps"] > 0 and summary["memory_frames_max"] >= 1
    assert 0.3 < summary["J"] <= 1.0 and 0.0 < summary["JF"] <= 1.0, summary  # the tracker follows the objects
    assert summary["backend"].startswith("backend cpu")
    for line in ("J&F", "3D_med%", "3D centroid error", f"{out / 'overlay.mp4'}", f"{out / 'plot.png'}",
                 f"{out / 'positions.png'}"):
        assert line in run.stdout
    # the node published 3D from the bag's depth: every present object, within a few percent of range
    assert summary["estimates_3d"] >= 3 * 19 and 0 <= summary["3D_med%"] < 3, summary
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 20
    assert (out / "plot.png").stat().st_size > 10_000 and (out / "positions.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert rows[-1]["sequence"] == "overall" and int(rows[-1]["objects"]) == 3
    # a second run replaces the demo's own bags instead of refusing them
    again = subprocess.run(cmd[:5] + ["--frames", "3"] + cmd[7:], cwd=ROOT, capture_output=True, text=True,
                           timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "summary.json").read_text())["processed"] == 3


def test_the_fastdds_profile_loads_cleanly(tmp_path):
    """config/fastdds.xml (the demo's default) is read by the Fast DDS under rclpy without a parse error;
    a malformed copy is reported, so the check can tell the two apart."""
    from hqsmem_ros.ros.transport import profile_path
    FASTDDS_PROFILE = profile_path()
    code = "import rclpy; rclpy.init(); n = rclpy.create_node('profile_probe'); n.create_publisher(" \
           "__import__('std_msgs.msg', fromlist=['String']).String, 'probe', 10); rclpy.shutdown()"

    def stderr_with(profile: Path) -> str:
        env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(profile), RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stderr

    assert "XMLPARSER" not in stderr_with(FASTDDS_PROFILE)
    broken = tmp_path / "broken.xml"
    broken.write_text(FASTDDS_PROFILE.read_text().replace("<sec>0</sec>", "<sec>x</sec>"))
    assert "XMLPARSER" in stderr_with(broken)
