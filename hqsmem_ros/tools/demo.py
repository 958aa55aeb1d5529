"""The demo, end to end over real ROS 2 topics: writes a sample bag (real-photo objects over real
backgrounds, with an aligned depth stream and camera_info, and ground truth: masks and 3D centroids),
starts the tracker node (default backend, ``depth.enabled``) as a subprocess, replays the bag into it in
lockstep, records its output, scores it (J, F, 3D centroid error), and draws an overlay video, a plot of
IoU and memory, and a plot of estimated against true 3D centroids.

Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on a ROS domain of its own.

    python -m hqsmem_ros.tools.demo                  # ./out/demo
    python -m hqsmem_ros.tools.demo --frames 20 --size 320x240   # a short CI run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.sequences import SEQUENCE_KINDS
from ..core.types import FrameResult, ObjectResult, mask_box
from ..ros import params
from . import bags, evaluate
from .sample_bag import parse_size, write_sample_bag

SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoPaths:
    sample: Path
    tracks: Path
    node_log: Path
    scores_csv: Path
    scores_json: Path
    video: Path
    plot: Path
    positions: Path
    summary: Path

    @classmethod
    def under(cls, out: Path) -> "DemoPaths":
        return cls(out / "sample_bag", out / "tracks_bag", out / "node.log", out / "scores.csv",
                   out / "scores.json", out / "overlay.mp4", out / "plot.png", out / "positions.png",
                   out / "summary.json")


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of a process (Linux /proc), None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class TrackerProcess:
    """The node as a subprocess with ``depth.enabled``, its output in a log file."""

    def __init__(self, backend: str, env: dict[str, str], log: Path):
        self.log = open(log, "w")
        cmd = [sys.executable, "-m", "hqsmem_ros.ros.node", "--ros-args", "-p", f"backend:={backend}",
               "-p", "depth.enabled:=true"]
        for topic in ("/image", "/depth", "/camera_info"):  # lockstep replay must not lose a frame in transit
            cmd += ["-p", params.image_qos_override("reliability", "reliable", topic)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def died(self) -> str | None:
        rc = self.proc.poll()
        return None if rc is None else f"the tracker node exited with code {rc} (see {self.log.name})"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def node_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain_id),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # The node runs this same source tree (a source checkout need not be rebuilt to be demonstrated).
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def pick_domain_id() -> int:
    """A domain for this run only (5..94, not the caller's), so no other node joins the demo's topics."""
    taken = os.environ.get("ROS_DOMAIN_ID")
    return random.choice([d for d in range(5, 95) if str(d) != taken])


# -- drawing ---------------------------------------------------------------------------------------
def _results_by_stamp(tracks_bag: Path, shape: tuple[int, int]) -> dict[int, FrameResult]:
    out = {}
    for m in bags.read(tracks_bag, ["tracks"]):
        msg = m.decode()
        masks = bags.tracks_to_masks(msg, shape)
        objects = [ObjectResult(o.id, o.label, o.present, o.score, masks[o.id], mask_box(masks[o.id]), o.refined)
                   for o in msg.objects]
        out[bags.stamp_ns(msg.header)] = FrameResult(int(msg.frame_index), objects, msg.ok, msg.status,
                                                     int(msg.memory_frames))
    return out


def write_overlay_video(sample: Path, results: dict[int, FrameResult], path: Path, fps: float) -> int:
    """mp4 (mp4v) of the sample's frames with the node's masks, boxes and ids drawn; frames written."""
    from ..ros.overlay import draw_overlay
    from ..ros.params import OverlayConfig
    writer, written = None, 0
    image_topic = bags.image_topic(sample, bags.topic_types(sample))
    for i, m in enumerate(bags.read(sample, [image_topic])):
        msg = m.decode()
        rgb = bags.image_rgb(msg)
        result = results.get(bags.stamp_ns(msg.header))
        if result is None:
            frame = np.ascontiguousarray(rgb[:, :, ::-1])
            cv2.putText(frame, "no result (dropped)", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
        else:
            frame = draw_overlay(rgb, result, OverlayConfig())
        cv2.putText(frame, f"#{i}", (4, frame.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        writer.write(frame)
        written += 1
    if writer is not None:
        writer.release()
    return written


def write_plot(report: evaluate.Report, memory_frames: list[tuple[int, int]], path: Path) -> None:
    """IoU per frame per object, and memory frames per frame ((frame index, count) pairs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    for obj in report.objects:
        top.plot(obj.frames, obj.j, label=f"object {obj.obj_id}", lw=1.2)
    top.set_ylabel("IoU (J)")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="lower left", fontsize="small")
    top.grid(alpha=0.3)
    if memory_frames:
        bottom.step(*zip(*memory_frames), where="post", color="k", lw=1.2)
    bottom.set_ylabel("memory frames")
    bottom.set_xlabel("frame")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_positions_plot(gt: evaluate.BagSource, pred: evaluate.BagSource, path: Path) -> int:
    """Estimated (dots) against true (lines) 3D centroid, x, y and z over the frames, per object; returns how
    many estimates it drew."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    stamps = gt.frames(gt.sequences()[0])
    truth = [gt.positions(gt.sequences()[0], s) for s in stamps]
    estimate = [pred.positions(pred.sequences()[0], s) for s in stamps]
    ids = sorted({i for frame in truth for i in frame})
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    drawn = 0
    for k, (ax, name) in enumerate(zip(axes, "xyz")):
        for n, oid in enumerate(ids):
            colour = f"C{n}"
            ax.plot([i for i, t in enumerate(truth) if oid in t], [t[oid][k] for t in truth if oid in t],
                    color=colour, lw=1.2, label=f"object {oid} true" if k == 0 else None)
            points = [(i, e[oid][k]) for i, e in enumerate(estimate) if oid in e]
            drawn += len(points)
            if points:
                ax.plot(*zip(*points), ".", color=colour, ms=4, label=f"object {oid} estimated" if k == 0 else None)
        ax.set_ylabel(f"{name} (m)")
        ax.grid(alpha=0.3)
    axes[0].set_title("3D centroid in the camera's optical frame (x right, y down, z forward)", fontsize="medium")
    axes[0].legend(loc="upper left", fontsize="x-small", ncol=max(1, len(ids)))
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn // 3


# -- the run ---------------------------------------------------------------------------------------
def run_demo(out: Path, frames: int | None = 90, size: tuple[int, int] = (480, 640), kind: str = "occlusion",
             backend: str = "auto", domain_id: int | None = None, startup_timeout: float = 300.0,
             progress: bool = True) -> dict:
    """Everything above; returns the summary (also written to summary.json)."""
    from .replay import replay
    paths = DemoPaths.under(Path(out))
    Path(out).mkdir(parents=True, exist_ok=True)
    for bag in (paths.sample, paths.tracks):  # the demo's own bags from an earlier run
        if bags.is_bag(bag):
            shutil.rmtree(bag)
    write_sample_bag(paths.sample, kind, frames, size, depth=True)
    domain_id = domain_id if domain_id is not None else pick_domain_id()
    env = node_env(domain_id)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})  # replay's rclpy.init
    print(f"demo: sample bag {paths.sample}; starting the tracker node (backend {backend}, "
          f"ROS_DOMAIN_ID {domain_id})", flush=True)
    node = TrackerProcess(backend, env, paths.node_log)
    try:
        summary = replay(paths.sample, paths.tracks, wait_s=startup_timeout, frame_timeout=120.0,
                         progress=progress, abort=node.died)
        peak_rss = peak_rss_mb(node.proc.pid)
    finally:
        node.stop()

    gt = evaluate.open_source(paths.sample, None, evaluate.GT_TOPICS)
    pred = evaluate.open_source(paths.tracks, "tracks", evaluate.PRED_TOPICS)
    report = evaluate.evaluate(gt, pred)
    evaluate.write_csv(report, paths.scores_csv)
    evaluate.write_json(report, paths.scores_json)
    results = _results_by_stamp(paths.tracks, gt.shape)
    written = write_overlay_video(paths.sample, results, paths.video, fps=10.0)
    memory = [(i, results[s].memory_frames) for i, s in enumerate(gt.frames(paths.sample.name)) if s in results]
    write_plot(report, memory, paths.plot)
    estimates_3d = write_positions_plot(gt, pred, paths.positions)

    backend_line = next((line[line.index("backend "):].strip() for line in paths.node_log.read_text().splitlines()
                         if "backend " in line), "backend: unknown (see the node log)")
    overall = report.overall
    result = dict(frames_in=summary.frames_in, processed=summary.processed, dropped=summary.dropped,
                  failed=summary.failed, fps=summary.fps, latency_ms_p50=summary.latency(50),
                  latency_ms_p90=summary.latency(90), J=overall["J"], F=overall["F"], JF=overall["J&F"],
                  Q=overall["Q"], memory_frames_max=max((m for _, m in memory), default=0),
                  memory_frames_last=memory[-1][1] if memory else 0, node_peak_rss_mb=peak_rss,
                  estimates_3d=estimates_3d, **{k: overall.get(k, math.nan) for k in evaluate.COLUMNS_3D},
                  video_frames=written, backend=backend_line,
                  files={k: str(v) for k, v in asdict(paths).items()})
    paths.summary.write_text(json.dumps(evaluate.json_safe(result), indent=1))
    print(report.table())
    print(f"demo: replay: {summary.text()}")
    print(f"demo: {backend_line}")
    rss = f", node peak RSS {peak_rss:.0f} MB" if peak_rss else ""
    print(f"demo: {summary.fps:.2f} fps, J&F {overall['J&F']:.3f} (J {overall['J']:.3f}, F {overall['F']:.3f}), "
          f"Q {overall['Q']:.3f}, memory frames max {result['memory_frames_max']} / last "
          f"{result['memory_frames_last']}{rss}")
    print(f"demo: 3D centroid error (frames with J >= {report.min_j_3d}) median {result['3D_med'] * 1e3:.1f} mm "
          f"({result['3D_med%']:.2f} % of range), p90 {result['3D_p90'] * 1e3:.1f} mm ({result['3D_p90%']:.2f} %); "
          f"{estimates_3d} object positions published")
    for name in ("video", "plot", "positions", "scores_csv", "tracks", "node_log"):
        print(f"demo: {name:<10} {getattr(paths, name)}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default ./out/demo)")
    ap.add_argument("--frames", type=int, default=90, help="frames in the sample (default 90)")
    ap.add_argument("--size", type=parse_size, default=(480, 640), help="WxH (default 640x480)")
    ap.add_argument("--kind", choices=SEQUENCE_KINDS, default="occlusion", help="sample sequence")
    ap.add_argument("--backend", choices=("auto", "cpu", "hqsmem"), default="auto")
    ap.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID for the run (default: a free-looking one)")
    ap.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for the node to come up")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from .tracker_client import NodeTimeout
    try:
        result = run_demo(args.out, args.frames, args.size, args.kind, args.backend, args.domain_id,
                          args.startup_timeout, not args.no_progress)
    except NodeTimeout as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0 if result["processed"] == result["frames_in"] else 1


if __name__ == "__main__":
    sys.exit(main())
