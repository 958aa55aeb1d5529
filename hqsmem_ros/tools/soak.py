"""Soak test: push many frames through the tracker and watch the process's resources.

    python -m hqsmem_ros.tools.soak core --frames 100000 --every 5000 --size 96x128
    python -m hqsmem_ros.tools.soak node --frames 20000 --every 1000 --size 96x128

``core`` runs ``build_tracker(Settings(backend="cpu"))`` in this process; ``node`` starts the node
(``python -m hqsmem_ros.ros.node``) as a subprocess and feeds it over DDS, one frame at a time (each
waits for its tracks message, so every frame is processed, none dropped), and watches that process.
The frames loop over a synthetic sequence whose objects move, leave and come back; now and then one
object is removed and re-added. Every ``--every`` frames one line: frames, RSS, key frames held in
memory, open file descriptors, threads, fps. At the end: the least-squares slope of RSS per 1000
frames over the second half of the samples (the first half holds the warm-up allocations) and a
verdict against ``--tolerance-kib``; descriptors and threads must not grow at all over that half.
Exit status 0: flat, 1: growth.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.sequences import make_sequence
from ..core.types import Target
from ..ros import params

CHURN_EVERY = 500  # every this many frames one object is removed, and re-added half as many frames later
CHURN_ID = 2


@dataclass
class Sample:
    frames: int
    rss_kib: int
    memory_frames: int
    fds: int
    threads: int
    fps: float


def proc_status(pid: int | str = "self") -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def resources(pid: int | str = "self") -> tuple[int, int, int]:
    """(RSS in KiB, open file descriptors, threads) of a process, from /proc."""
    status = proc_status(pid)
    return int(status["VmRSS"].split()[0]), len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


def slope_per_1000(frames: list[int], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``frames``, per 1000 frames."""
    x, y = np.asarray(frames, float), np.asarray(values, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0
    return float(np.polyfit(x, y, 1)[0] * 1000)


class Monitor:
    """Takes and prints a sample every ``every`` frames; judges the run at the end."""

    def __init__(self, pid: int | str, every: int):
        self.pid, self.every = pid, every
        self.samples: list[Sample] = []
        self._t, self._n = time.perf_counter(), 0

    def tick(self, frames: int, memory_frames: int) -> None:
        if frames % self.every:
            return
        now = time.perf_counter()
        fps = (frames - self._n) / max(now - self._t, 1e-9)
        self._t, self._n = now, frames
        rss, fds, threads = resources(self.pid)
        sample = Sample(frames, rss, memory_frames, fds, threads, fps)
        self.samples.append(sample)
        print(f"frames={sample.frames} rss_mib={sample.rss_kib / 1024:.1f} memory_frames={sample.memory_frames} "
              f"fds={sample.fds} threads={sample.threads} fps={sample.fps:.1f}", flush=True)

    def verdict(self, tolerance_kib: float) -> bool:
        tail = self.samples[len(self.samples) // 2:]
        if len(tail) < 2:
            print("verdict: too few samples for a slope (lower --every)", flush=True)
            return False
        slope = slope_per_1000([s.frames for s in tail], [s.rss_kib for s in tail])
        fds = sorted({s.fds for s in tail})
        threads = sorted({s.threads for s in tail})
        flat = abs(slope) <= tolerance_kib and len(fds) == 1 and len(threads) == 1
        first, last = self.samples[0], self.samples[-1]
        print(f"rss_slope_kib_per_1000={slope:+.1f} over frames {tail[0].frames}..{tail[-1].frames} "
              f"(tolerance {tolerance_kib:g}); rss_mib {first.rss_kib / 1024:.1f} -> {last.rss_kib / 1024:.1f}; "
              f"fds {fds}; threads {threads}; memory_frames max {max(s.memory_frames for s in self.samples)}",
              flush=True)
        print(f"verdict: {'FLAT' if flat else 'GROWTH'}", flush=True)
        return flat


def churn(n: int, removed: bool, visible: bool) -> str | None:
    """'remove' or 'add' of object CHURN_ID at frame ``n``: removed every CHURN_EVERY frames, re-added
    from its mask on the first frame it is in sight half a period later."""
    phase = n % CHURN_EVERY
    if n and phase == 0 and not removed:
        return "remove"
    return "add" if removed and visible and phase >= CHURN_EVERY // 2 else None


def run_core(args, size: tuple[int, int]) -> bool:
    from ..core.backends.cpu import CpuBackendConfig
    from ..core.factory import Settings, build_tracker
    from ..core.session import TrackingSession
    seq = make_sequence("exit_reentry", size=size, n_objects=3)
    frames = [seq.frame(i) for i in range(len(seq))]  # rendered once: the loop measures the tracker
    tracker, line = build_tracker(Settings(backend="cpu", cpu=CpuBackendConfig(threads=args.threads,
                                                                               work_short_side=args.work_short_side)))
    print(line, flush=True)
    session = TrackingSession(tracker)
    labels = {t.obj_id: t.label for t in seq.targets()}
    monitor = Monitor("self", args.every)
    pending = seq.targets()
    for n in range(args.frames):
        rgb, truth = frames[n % len(frames)]
        action = churn(n, CHURN_ID not in session.object_ids, truth[CHURN_ID].any())
        if action == "remove":
            session.remove([CHURN_ID])
        elif action == "add":
            pending.append(Target(CHURN_ID, labels[CHURN_ID], mask=truth[CHURN_ID]))
        result = session.process(rgb, pending).result
        pending = []
        monitor.tick(n + 1, result.memory_frames)
    return monitor.verdict(args.tolerance_kib)


def run_node(args, size: tuple[int, int]) -> bool:
    from std_msgs.msg import Header
    from ..ros.convert import array_to_image, stamp_msg
    from .tracker_client import TrackerClient

    seq = make_sequence("exit_reentry", size=size, n_objects=3)
    images = [array_to_image(seq.frame(i)[0], "rgb8") for i in range(len(seq))]
    masks = [seq.frame(i)[1] for i in range(len(seq))]
    labels = {t.obj_id: t.label for t in seq.targets()}
    cmd = [sys.executable, "-m", "hqsmem_ros.ros.node", "--ros-args", "-p", "backend:=cpu",
           "-p", f"cpu.threads:={args.threads}", "-p", f"cpu.work_short_side:={args.work_short_side}",
           "-p", params.image_qos_override("reliability", "reliable"), "--log-level", "warn"]
    node_proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(node_proc.stderr), daemon=True).start()
    client = TrackerClient("hqsmem_soak")

    def died() -> str | None:
        return None if node_proc.poll() is None else f"the node did not come up:\n{''.join(stderr)}"

    flat, lost, removed = False, 0, False
    try:
        client.connect(timeout=120, abort=died, targets=False)  # the node imports torch and builds its model first
        client.add_targets(seq.targets())
        monitor = Monitor(node_proc.pid, args.every)
        for n in range(args.frames):
            i = n % len(images)
            action = churn(n, removed, masks[i][CHURN_ID].any())
            removed = action == "remove" or (removed and action != "add")
            if action == "remove":
                client.remove_targets([CHURN_ID])
            elif action == "add":
                client.add_targets([Target(CHURN_ID, labels[CHURN_ID], mask=masks[i][CHURN_ID])])
            stamp = (n + 1) * 33_333_333  # 30 fps
            image = images[i]
            image.header = Header(stamp=stamp_msg(stamp), frame_id="soak")
            client.publish_image(image, stamp)
            lost += not client.wait_for(stamp, timeout=10)
            monitor.tick(n + 1, client.last_tracks.memory_frames if client.last_tracks else 0)
        print(f"frames without a tracks message within 10 s: {lost}", flush=True)
        flat = monitor.verdict(args.tolerance_kib) and lost == 0
    finally:
        client.close()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
        rc = node_proc.wait(30)
        clean = rc == 0 and "Traceback" not in "".join(stderr)
        print(f"node exit on SIGINT: rc={rc}, {'clean' if clean else 'NOT clean'}", flush=True)
        if not clean:
            print("".join(stderr), flush=True)
    return flat and clean


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("core", "node"))
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1000, help="frames between samples")
    parser.add_argument("--size", type=_size, default=(96, 128), help="frame size HxW")
    parser.add_argument("--threads", type=int, default=1, help="CPU backend threads")
    parser.add_argument("--work-short-side", type=int, default=96, help="CPU backend working short side")
    parser.add_argument("--tolerance-kib", type=float, default=64.0,
                        help="largest |RSS slope| (KiB per 1000 frames) over the second half that counts as flat")
    args = parser.parse_args(argv)
    run = run_core if args.mode == "core" else run_node
    return 0 if run(args, args.size) else 1


if __name__ == "__main__":
    sys.exit(main())
