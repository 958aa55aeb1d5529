"""Camera delivery: the share of raw frames a best-effort camera publisher gets into the tracker node;
under a flood, processed fps against lockstep (``--flood``); peak RSS after single inputs at the limits
(``--peaks``); lockstep fps through the node with 1, 3 or 12 objects (``--lockstep 3 12``).

    python -m hqsmem_ros.tools.benchmark_delivery [--seconds 10] [--sizes 640x480 1280x720] [--rates 15 30]

For each size and rate, the node starts its default way (``python -m hqsmem_ros.ros.node``) with one
change: its image subscription keeps every frame (history depth = the frames sent), so that a frame that
arrives while the worker is busy waits for it instead of being overwritten; it tracks nothing, so the
queue drains fast. A separate camera process publishes rgb8 frames with sensor-data QoS (best effort), as
camera drivers do. The node's own ``/diagnostics`` count says how many arrived
(``frames_received``). Each case runs with three transport set-ups:

    builtin   neither process has the package's Fast DDS profile (how it was before config/fastdds.xml)
    node      the node applies the profile itself; the camera runs with Fast DDS's built-in transports
    both      the camera's process is started with the profile too (README, "Camera delivery")

``--flood``: one node, started its default way, tracks 3 objects and alternates a lockstep phase with a
phase in which a camera process publishes as fast as it can (or at ``--flood-rate``); both show the same
scene by the wall clock (``scene_index``), so the ratio compares like with like (README, "Floods").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core.sequences import make_sequence
from ..ros import params, transport
from .demo import peak_rss_mb, pick_domain_id
from .sample_bag import parse_size

SETUPS = ("builtin", "node", "both")
LOST_AFTER_S = 10.0  # no tracks by then: the lockstep frame was lost (a node's first frame takes ~1.3 s)
MAX_LOST = 5
_BUILTIN_PROFILE = ('<?xml version="1.0" encoding="UTF-8"?>\n<dds xmlns="http://www.eprosima.com"><profiles>'
                    '<data_writer profile_name="unused"/></profiles></dds>\n')  # changes nothing


SCENE_HZ = 30.0  # the scene's own frame rate


def _scene(width: int, height: int, n_objects: int):
    return make_sequence("translation", n_frames=30, size=(height, width), n_objects=max(n_objects, 1))


def scene_index(start: float, n_frames: int) -> int:
    """The scene frame on view now (``time.time()``), ``start`` being when frame 0 was: the scene plays at
    SCENE_HZ forwards and back (no jump back to its start). A camera publishing at any rate and the lockstep
    client both show it by this clock, so skipping frames, or switching from one to the other, shows the
    tracker the motion a real camera would, and the same motion in both phases of ``flood``."""
    i = int((time.time() - start) * SCENE_HZ) % (2 * n_frames - 2)
    return i if i < n_frames else 2 * n_frames - 2 - i


def camera(width: int, height: int, rate: float, n_frames: int, n_objects: int, start: float) -> None:
    """The camera process: ``n_frames`` rgb8 frames at ``rate`` Hz (0: as fast as it can) once the node
    subscribes, of the scene that started at ``start`` (``scene_index``)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..ros.convert import array_to_image, stamp_msg

    seq = _scene(width, height, n_objects)
    frames = [array_to_image(seq.frame(i)[0], "rgb8") for i in range(len(seq))]
    rclpy.init()
    node = rclpy.create_node("camera")
    pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    tick = time.monotonic()
    for i in range(n_frames):
        stamp = (i + 1) * 1_000_000_000 // int(rate or 1000)
        msg = frames[scene_index(start, len(frames))]
        msg.header = Header(stamp=stamp_msg(stamp), frame_id="cam")
        pub.publish(msg)
        if rate:
            tick += 1.0 / rate
            time.sleep(max(0.0, tick - time.monotonic()))
    time.sleep(1.0)  # let the last frames leave before the participant goes
    node.destroy_node()
    rclpy.shutdown()


class _Node:
    """The tracker node as a subprocess, started with ``env`` and ``params`` and tracking the sequence's
    objects, driven through the project's DDS client (its /diagnostics, and in lockstep its tracks)."""

    def __init__(self, env: dict, params: list[str], width: int, height: int, n_objects: int):
        from std_msgs.msg import Header

        from ..ros.convert import targets_to_msg
        from .tracker_client import TrackerClient

        args = [sys.executable, "-m", "hqsmem_ros.ros.node"] + (["--ros-args"] + params if params else [])
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.client = TrackerClient("delivery_benchmark")
        self.client.connect(timeout=90, abort=self._died)
        self.seq = _scene(width, height, n_objects)
        self.scene_start = time.time()  # the targets are frame 0's: the first lockstep frame restarts the scene
        self.sent = 0  # lockstep frames so far: each call goes on with new stamps (old ones would be refused)
        self.lost = 0  # lockstep frames that never got tracks
        if n_objects:  # 0: track nothing
            self.client.publish_targets(targets_to_msg(self.seq.targets(), Header()))

    def _died(self) -> str | None:
        return None if self.proc.poll() is None else f"the node exited: {self.proc.stderr.read()}"

    def diagnostics_after(self, after: float, timeout: float = 10.0) -> tuple[float, dict[str, str]]:
        """(when it arrived, time.monotonic(); its values): the node's first diagnostics report published after
        ``after`` (monotonic)."""
        time.sleep(max(0.0, after - time.monotonic()))
        values = self.client.latest_diagnostics(timeout)
        return time.monotonic(), values

    def lockstep_fps(self, n_frames: int = 10**9, seconds: float = float("inf")) -> float:
        """Frames per second when each frame waits for its tracks message: ``n_frames`` frames, or for
        ``seconds``, whichever ends first. A frame with no tracks within ``LOST_AFTER_S`` was lost on the way
        (a best-effort subscription does not repair it): it is counted in ``lost``, and the next frame goes;
        the time waited for it is left out of the rate."""
        from std_msgs.msg import Header

        from ..ros.convert import array_to_image, stamp_msg
        frames = [array_to_image(self.seq.frame(i)[0], "rgb8") for i in range(len(self.seq))]
        start, waited_in_vain, done = time.monotonic(), 0.0, 0
        if not self.sent:
            self.scene_start = time.time()
        while done < n_frames and time.monotonic() - start - waited_in_vain < seconds:
            self.sent += 1
            stamp = self.sent * 1_000_000_000 // 30
            msg = frames[scene_index(self.scene_start, len(frames))]
            msg.header = Header(stamp=stamp_msg(stamp), frame_id="cam")
            sent_at = time.monotonic()
            self.client.publish_image(msg, stamp)
            if self.client.wait_for(stamp, LOST_AFTER_S, self._died):
                done += 1
                continue
            self.lost += 1
            waited_in_vain += time.monotonic() - sent_at
            if self.lost > MAX_LOST:
                raise RuntimeError(f"no tracks for {self.lost} lockstep frames (the last: frame {self.sent})")
        return done / (time.monotonic() - start - waited_in_vain)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


def _camera_command(width: int, height: int, rate: float, n_frames: int, n_objects: int,
                    start: float | None = None) -> list[str]:
    """The camera as its own process (this module with --camera), showing the scene that started at ``start``
    (default: now)."""
    return [sys.executable, "-m", "hqsmem_ros.tools.benchmark_delivery", "--camera", str(width), str(height),
            str(rate), str(n_frames), str(n_objects), repr(time.time() if start is None else start)]


def _envs(setup: str, builtin_profile: Path) -> tuple[dict, dict]:
    """(node, camera) environments for a transport set-up."""
    base = {k: v for k, v in os.environ.items() if k != transport.ENV}
    node_env, camera_env = dict(base), dict(base)
    if setup == "builtin":
        node_env[transport.ENV] = camera_env[transport.ENV] = str(builtin_profile)
    elif setup == "both":
        transport.apply(camera_env)
    else:
        camera_env[transport.ENV] = str(builtin_profile)
    return node_env, camera_env


def run_case(width: int, height: int, rate: float, seconds: float, setup: str, builtin_profile: Path) -> dict:
    node_env, camera_env = _envs(setup, builtin_profile)
    n_frames = int(round(rate * seconds))
    node = _Node(node_env, ["-p", params.image_qos_override("depth", n_frames)], width, height, 0)
    try:
        before = int(node.diagnostics_after(time.monotonic())[1]["frames_received"])
        subprocess.run(_camera_command(width, height, rate, n_frames, 1), env=camera_env, check=True)
        count, values = None, node.diagnostics_after(time.monotonic() + 1.0)[1]
        while values["frames_received"] != count:  # until the node's queue has drained
            count = values["frames_received"]
            values = node.diagnostics_after(time.monotonic() + 1.0)[1]
        received = int(values["frames_received"]) - before
        return {"size": f"{width}x{height}", "rate": rate, "setup": setup, "sent": n_frames, "received": received,
                "share": received / n_frames, "processed": int(values["frames_processed"]),
                "dropped": int(values["frames_dropped"])}
    finally:
        node.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(width: int, height: int, seconds: float, n_objects: int, builtin_profile: Path, rate: float = 0,
          rounds: int = 3) -> dict:
    """Processed fps under a best-effort flood (``rate`` Hz, 0: as fast as the camera can publish) against
    lockstep fps, and the node's peak RSS in both. One node, started its default way, alternates a lockstep
    phase and a flood phase of ``seconds`` each, ``rounds`` times: a drift in the machine's speed, or a node
    process faster than another, then falls on both sides of the ratio alike."""
    node_env, camera_env = _envs("both", builtin_profile)
    node = _Node(node_env, [], width, height, n_objects)
    phases = []
    try:
        node.lockstep_fps(10)  # warm-up: the first frames build caches
        for i in range(rounds):
            node.lockstep_fps(3)  # untimed: the frame the flood left with the worker
            fps_lockstep = node.lockstep_fps(seconds=seconds)
            if i == 0:
                rss_lockstep = peak_rss_mb(node.proc.pid)  # before any flood
            phases.append(dict(_flood_phase(node, width, height, seconds, n_objects, camera_env, rate),
                               lockstep_fps=fps_lockstep))
        flood_fps = sum(p["flood_fps"] for p in phases) / rounds
        lockstep_fps = sum(p["lockstep_fps"] for p in phases) / rounds
        return {"size": f"{width}x{height}", "objects": n_objects, "rate": rate, "phases": phases,
                "lockstep_fps": lockstep_fps, "flood_fps": flood_fps, "ratio": flood_fps / lockstep_fps,
                "lockstep_lost": node.lost,
                "peak_rss_lockstep_mb": rss_lockstep, "peak_rss_flood_mb": peak_rss_mb(node.proc.pid)}
    finally:
        node.close()


def _flood_phase(node: _Node, width: int, height: int, seconds: float, n_objects: int, camera_env: dict,
                 rate: float) -> dict:
    """A camera process floods the node; measured from the first diagnostics with its frames, for ``seconds``."""
    before = int(node.diagnostics_after(time.monotonic())[1]["frames_received"])
    # Frames for far longer than the measurement: the camera is stopped after it (a camera that ran out of
    # frames early would leave the node idle inside the window).
    cam = subprocess.Popen(_camera_command(width, height, rate, 10**9, n_objects, node.scene_start),
                           env=camera_env)
    try:
        t0, first = node.diagnostics_after(time.monotonic(), timeout=60)
        while int(first["frames_received"]) <= before:
            t0, first = node.diagnostics_after(time.monotonic(), timeout=60)
        cpu0 = cpu_seconds(cam.pid), cpu_seconds(node.proc.pid)
        t1, last = node.diagnostics_after(t0 + seconds, timeout=seconds + 10)
        cpu1 = cpu_seconds(cam.pid), cpu_seconds(node.proc.pid)
        if cam.poll() is not None:
            raise RuntimeError(f"the camera exited during the measurement (rc {cam.returncode})")
    finally:
        cam.kill()
        cam.wait()

    def rate_of(key: str) -> float:
        return (int(last[key]) - int(first[key])) / (t1 - t0)
    return {"flood_fps": rate_of("frames_processed"), "received_per_s": rate_of("frames_received"),
            "dropped_in_queue_per_s": rate_of("frames_dropped_in_queue"),
            "camera_cores": (cpu1[0] - cpu0[0]) / (t1 - t0), "node_cores": (cpu1[1] - cpu0[1]) / (t1 - t0)}


def lockstep_speed(width: int, height: int, object_counts: list[int], builtin_profile: Path, warmup: int = 10,
                   frames: int = 60) -> list[dict]:
    """Lockstep fps through the node, started its default way, tracking each number of objects (a node each):
    ``warmup`` untimed frames, then ``frames``; with the node's per-stage latency p50 from its /diagnostics."""
    node_env, _ = _envs("both", builtin_profile)
    rows = []
    for n_objects in object_counts:
        node = _Node(node_env, [], width, height, n_objects)
        try:
            node.lockstep_fps(warmup)
            fps = node.lockstep_fps(frames)
            values = node.diagnostics_after(time.monotonic())[1]
            p50 = {k.split(".")[1]: float(v) for k, v in values.items()
                   if k.startswith("latency_ms.") and k.endswith(".p50")}
            rows.append({"objects": n_objects, "fps": fps, "lost": node.lost, "p50_ms": p50})
        finally:
            node.close()
    return rows


def single_input_peaks(width: int, height: int, n_objects: int, builtin_profile: Path) -> list[tuple[str, float]]:
    """The node's peak RSS (MB) in lockstep, then after each single input at the limits, one after the other:
    a raw frame of ``max_image_pixels`` (4096x2160, rgb8 and mono16), and a TargetArray of
    ``MAX_REQUEST_ITEMS`` box targets; lockstep frames after each show the node went on."""
    from std_msgs.msg import Header

    from ..core.types import Target
    from ..ros.convert import MAX_REQUEST_ITEMS, array_to_image, stamp_msg, targets_to_msg
    node_env, _ = _envs("both", builtin_profile)
    node = _Node(node_env, ["-p", params.image_qos_override("reliability", "reliable")], width, height, n_objects)
    rows = []
    try:
        node.lockstep_fps(20)
        rows.append(("lockstep (steady)", peak_rss_mb(node.proc.pid)))
        big = (2160, 4096)
        inputs = [
            ("4096x2160 rgb8 frame", array_to_image(np.zeros(big + (3,), np.uint8), "rgb8")),
            ("4096x2160 mono16 frame", array_to_image(np.zeros(big, np.uint16), "mono16")),
        ]
        for what, msg in inputs:
            received = int(node.diagnostics_after(time.monotonic())[1]["frames_received"])
            msg.header = Header(stamp=stamp_msg(0), frame_id="cam")
            node.client.publish_image(msg, 0)
            while int(node.diagnostics_after(time.monotonic())[1]["frames_received"]) <= received:
                pass
            node.lockstep_fps(5)
            rows.append((what, peak_rss_mb(node.proc.pid)))
        many = [Target(i, box=(0.0, 0.0, 10.0, 10.0)) for i in range(1, MAX_REQUEST_ITEMS + 1)]
        node.client.publish_targets(targets_to_msg(many, Header()))
        node.lockstep_fps(5)
        rows.append((f"TargetArray of {MAX_REQUEST_ITEMS} targets", peak_rss_mb(node.proc.pid)))
    finally:
        node.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="camera run per case (default 10)")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WxH frame sizes")
    parser.add_argument("--rates", nargs="+", type=float, default=[15.0, 30.0], help="camera rates in Hz")
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS), help="transport set-ups")
    parser.add_argument("--flood", action="store_true", help="instead: processed fps under a max-rate flood vs "
                        "lockstep, 640x480, 3 objects (and the node's peak RSS)")
    parser.add_argument("--flood-rate", type=float, default=0.0, help="camera rate of --flood (0: as fast as it "
                        "can publish)")
    parser.add_argument("--rounds", type=int, default=3, help="lockstep and flood phases of --flood, alternated "
                        "(default 3 of each, --seconds each)")
    parser.add_argument("--peaks", action="store_true", help="instead: the node's peak RSS after single inputs at "
                        "the limits (4K frames, a TargetArray of the most targets) against lockstep, 640x480")
    parser.add_argument("--lockstep", type=int, nargs="+", metavar="OBJECTS", help="instead: lockstep fps through "
                        "the node tracking each number of objects, 640x480 (10 warm-up frames, then 60)")
    parser.add_argument("--camera", nargs=6, metavar=("W", "H", "RATE", "N", "OBJECTS", "START"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.camera:
        w, h, rate, n, objects, start = args.camera
        camera(int(w), int(h), float(rate), int(n), int(objects), float(start))
        return 0
    # A domain of its own, inherited by the node and the camera: another run's /diagnostics would mix in.
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(pick_domain_id()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builtin = Path(tmp) / "builtin.xml"
        builtin.write_text(_BUILTIN_PROFILE)
        if args.peaks:
            rows = single_input_peaks(640, 480, 3, builtin)
            steady = rows[0][1]
            for what, mb in rows:
                print(f"{what:<36} peak RSS {mb:7.0f} MB  ({mb / steady:.2f} x steady)")
            return 0
        if args.lockstep:
            for r in lockstep_speed(640, 480, args.lockstep, builtin):
                stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["p50_ms"].items()))
                print(f"640x480, {r['objects']} objects: lockstep {r['fps']:.2f} fps ({r['lost']} frames lost); "
                      f"node latency p50 ms: {stages}", flush=True)
            return 0
        if args.flood:
            r = flood(640, 480, args.seconds, 3, builtin, args.flood_rate, args.rounds)
            for i, p in enumerate(r["phases"], 1):
                print(f"round {i}: lockstep {p['lockstep_fps']:.2f} fps, flood {p['flood_fps']:.2f} fps processed "
                      f"({p['received_per_s']:.1f} frames/s taken, {p['dropped_in_queue_per_s']:.1f} frames/s "
                      f"overwritten in its queue): ratio {p['flood_fps'] / p['lockstep_fps']:.2f}; CPU cores used "
                      f"during the flood: camera {p['camera_cores']:.2f}, node {p['node_cores']:.2f} "
                      f"(of {os.cpu_count()})", flush=True)
            print(f"{r['size']}, {r['objects']} objects, {len(r['phases'])} rounds: lockstep {r['lockstep_fps']:.2f} "
                  f"fps ({r['lockstep_lost']} lockstep frames lost), flood {r['flood_fps']:.2f} fps: ratio "
                  f"{r['ratio']:.2f}; node peak RSS {r['peak_rss_lockstep_mb']:.0f} MB after lockstep, "
                  f"{r['peak_rss_flood_mb']:.0f} MB at the end")
            return 0
        print(f"{'size':<11}{'rate':>6}  {'setup':<9}{'sent':>6}{'received':>10}{'share':>8}{'processed':>11}")
        for size in args.sizes:
            height, width = parse_size(size)
            for rate in args.rates:
                for setup in args.setups:
                    row = run_case(width, height, rate, args.seconds, setup, builtin)
                    rows.append(row)
                    print(f"{row['size']:<11}{rate:>6.0f}  {setup:<9}{row['sent']:>6}{row['received']:>10}"
                          f"{row['share']:>8.1%}{row['processed']:>11}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
