"""Camera delivery: the share of raw frames a best-effort camera publisher gets into the tracker node.

    python -m hqsmem_ros.tools.benchmark_delivery [--seconds 10] [--sizes 640x480 1280x720] [--rates 15 30]

For each size and rate, the node starts its default way (``python -m hqsmem_ros.ros.node``, no
parameters) and tracks the sequence's objects; a separate camera process publishes rgb8 frames with
sensor-data QoS (best effort), as camera drivers do. The node's own ``/diagnostics`` count says how many
arrived (``frames_received``). Each case runs with three transport set-ups:

    builtin   neither process has the package's Fast DDS profile (how it was before config/fastdds.xml)
    node      the node applies the profile itself; the camera runs with Fast DDS's built-in transports
    both      the camera's process is started with the profile too (README, "Camera delivery")
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..core.sequences import make_sequence
from ..ros import transport
from .sample_bag import parse_size

SETUPS = ("builtin", "node", "both")
_BUILTIN_PROFILE = ('<?xml version="1.0" encoding="UTF-8"?>\n<dds xmlns="http://www.eprosima.com"><profiles>'
                    '<data_writer profile_name="unused"/></profiles></dds>\n')  # changes nothing


def camera(width: int, height: int, rate: float, n_frames: int) -> None:
    """The camera process: ``n_frames`` rgb8 frames at ``rate`` Hz once the node subscribes."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..ros.convert import array_to_image, stamp_msg

    seq = make_sequence("translation", n_frames=30, size=(height, width), n_objects=1)
    frames = [seq.frame(i)[0] for i in range(len(seq))]
    rclpy.init()
    node = rclpy.create_node("camera")
    pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    tick = time.monotonic()
    for i in range(n_frames):
        stamp = (i + 1) * 1_000_000_000 // int(rate)
        pub.publish(array_to_image(frames[i % len(frames)], "rgb8", Header(stamp=stamp_msg(stamp), frame_id="cam")))
        tick += 1.0 / rate
        time.sleep(max(0.0, tick - time.monotonic()))
    time.sleep(1.0)  # let the last frames leave before the participant goes
    node.destroy_node()
    rclpy.shutdown()


def _received(client, diagnostics: list, after: float, timeout: float = 10.0) -> dict[str, str]:
    """The node's first diagnostics values published after ``after`` (monotonic)."""
    import rclpy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(client, timeout_sec=0.1)
        if diagnostics and diagnostics[-1][0] > after:
            return diagnostics[-1][1]
    raise RuntimeError("the node published no diagnostics")


def run_case(width: int, height: int, rate: float, seconds: float, setup: str, builtin_profile: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from ..msg import TargetArray
    from ..ros.convert import targets_to_msg

    base = {k: v for k, v in os.environ.items() if k != transport.ENV}
    node_env, camera_env = dict(base), dict(base)
    if setup == "builtin":
        node_env[transport.ENV] = camera_env[transport.ENV] = str(builtin_profile)
    elif setup == "both":
        transport.apply(camera_env)
    else:
        camera_env[transport.ENV] = str(builtin_profile)
    node = subprocess.Popen([sys.executable, "-m", "hqsmem_ros.ros.node"], env=node_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = rclpy.create_node("delivery_benchmark")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    diagnostics: list = []
    client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(
        (time.monotonic(), {kv.key: kv.value for kv in m.status[0].values})), reliable)
    targets = client.create_publisher(TargetArray, "targets", reliable)
    try:
        deadline = time.monotonic() + 90
        while targets.get_subscription_count() == 0:
            rclpy.spin_once(client, timeout_sec=0.1)
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError(f"the node did not come up: {node.stderr.read() if node.poll() else ''}")
        seq = make_sequence("translation", n_frames=1, size=(height, width), n_objects=1)
        targets.publish(targets_to_msg(seq.targets(), Header()))
        before = int(_received(client, diagnostics, time.monotonic())["frames_received"])
        n_frames = int(round(rate * seconds))
        subprocess.run([sys.executable, "-m", "hqsmem_ros.tools.benchmark_delivery", "--camera",
                        str(width), str(height), str(rate), str(n_frames)], env=camera_env, check=True)
        values = _received(client, diagnostics, time.monotonic() + 1.0)
        received = int(values["frames_received"]) - before
        return {"size": f"{width}x{height}", "rate": rate, "setup": setup, "sent": n_frames, "received": received,
                "share": received / n_frames, "processed": int(values["frames_processed"]),
                "dropped": int(values["frames_dropped"])}
    finally:
        client.destroy_node()
        node.terminate()
        node.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="camera run per case (default 10)")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WxH frame sizes")
    parser.add_argument("--rates", nargs="+", type=float, default=[15.0, 30.0], help="camera rates in Hz")
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS), help="transport set-ups")
    parser.add_argument("--camera", nargs=4, metavar=("W", "H", "RATE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.camera:
        w, h, rate, n = args.camera
        camera(int(w), int(h), float(rate), int(n))
        return 0
    import rclpy
    rclpy.init()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builtin = Path(tmp) / "builtin.xml"
        builtin.write_text(_BUILTIN_PROFILE)
        print(f"{'size':<11}{'rate':>6}  {'setup':<9}{'sent':>6}{'received':>10}{'share':>8}{'processed':>11}")
        for size in args.sizes:
            height, width = parse_size(size)
            for rate in args.rates:
                for setup in args.setups:
                    row = run_case(width, height, rate, args.seconds, setup, builtin)
                    rows.append(row)
                    print(f"{row['size']:<11}{rate:>6.0f}  {setup:<9}{row['sent']:>6}{row['received']:>10}"
                          f"{row['share']:>8.1%}{row['processed']:>11}", flush=True)
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
