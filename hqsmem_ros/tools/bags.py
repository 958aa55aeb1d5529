"""Rosbag2 reading and writing shared by replay, offline, evaluate and the sample bag (``rosbags``, no DDS).

Messages here are ``rosbags`` dataclasses; the project's own types are registered from ``msg/*.msg``.
Raw CDR bytes read from a bag can be published by rclpy unchanged, and bytes received by a raw rclpy
subscription can be written to a bag unchanged, so replay never converts between the two worlds.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from rosbags.image import message_to_cvimage
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..core.depth import Intrinsics
from ..core.types import Target, mask_box

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
TARGETS = "hqsmem_ros/msg/TargetArray"
TRACKS = "hqsmem_ros/msg/TrackedObjectArray"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def _msg_dir() -> Path:
    """msg/ of a source checkout, else the installed share/hqsmem_ros/msg."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) + [sys.prefix]
    candidates += [Path(p) / "share" / "hqsmem_ros" / "msg" for p in prefixes if p]
    for path in candidates:
        if (path / "TrackedObjectArray.msg").is_file():
            return path
    raise FileNotFoundError("hqsmem_ros message definitions not found (looked in "
                            + ", ".join(map(str, candidates)) + ")")


@functools.cache
def typestore() -> Typestore:
    """ROS 2 Kilted types plus hqsmem_ros/msg/*."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"hqsmem_ros/msg/{path.stem}"))
    store.register(types)
    return store


def serialize(msg) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: bytes, msgtype: str):
    return typestore().deserialize_cdr(raw, msgtype)


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def header(stamp: int, frame_id: str = ""):
    t = typestore().types
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
        sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)


# -- reading ---------------------------------------------------------------------------------------
def is_bag(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "metadata.yaml").is_file()


def topic_types(path: Path) -> dict[str, str]:
    with Reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def pick_topic(types: dict[str, str], msgtypes: Iterable[str], preferred: str | None = None,
               names: Iterable[str] = ()) -> str | None:
    """``preferred`` if given (it must exist), else the first of ``names`` present with one of
    ``msgtypes``, else the only topic with one of ``msgtypes``; None when there is none."""
    msgtypes = set(msgtypes)
    if preferred is not None:
        if preferred not in types:
            raise ValueError(f"topic {preferred} is not in the bag (it has {', '.join(sorted(types))})")
        return preferred
    for name in names:
        if types.get(name) in msgtypes:
            return name
    matching = sorted(t for t, m in types.items() if m in msgtypes)
    if len(matching) > 1:
        raise ValueError(f"several candidate topics ({', '.join(matching)}): name one")
    return matching[0] if matching else None


def image_topic(bag: Path | str, types: dict[str, str], preferred: str | None = None) -> str:
    """The camera topic (Image or CompressedImage) of ``bag`` with topics ``types``: ``preferred``, else
    ``image`` / ``image/compressed``, else the only one; ValueError when there is none."""
    topic = pick_topic(types, (IMAGE, COMPRESSED), preferred, ("image", "image/compressed"))
    if topic is None:
        raise ValueError(f"{bag}: no Image or CompressedImage topic")
    return topic


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time: int  # the bag's receive timestamp, ns
    raw: bytes

    def decode(self):
        return deserialize(self.raw, self.msgtype)


def read(path: Path, topics: Iterable[str]) -> Iterator[BagMessage]:
    """Messages of ``topics`` in log-time order."""
    topics = set(topics)
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, log_time, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, log_time, bytes(raw))


def frames_with_targets(path: Path, image_topic: str, targets_topic: str | None = None,
                        streams: Sequence[str] = ()) -> Iterator[tuple[BagMessage, object, list[BagMessage]]]:
    """(image message, its decoded message, messages due before it) per frame, in order.

    A TargetArray is due before the first frame stamped at or after its own stamp (a zero stamp, "the
    next frame": the first frame logged at or after it), so it goes ahead of the frame it names
    whatever the order the bag stored them in. Messages of ``streams`` (a camera's ``depth``,
    ``camera_info``) are due, after the targets, before the first frame stamped at or after theirs; they are
    read in the same pass as the frames, so one must be logged before the frame after the one it belongs to
    (as a driver's depth is, next to its colour frame)."""
    pending = [(stamp_ns(t.decode().header), t) for t in read(path, [targets_topic])] if targets_topic else []
    held: list[tuple[int, BagMessage]] = []  # stream messages not yet due

    def with_due(m: BagMessage, msg):
        nonlocal pending, held
        stamp = stamp_ns(msg.header)
        due = [t for s, t in pending if (s <= stamp if s else t.log_time <= m.log_time)]
        pending = [(s, t) for s, t in pending if not any(t is d for d in due)]
        due += [x for s, x in held if s <= stamp]
        held = [(s, x) for s, x in held if s > stamp]
        return m, msg, due

    frame = None  # the last frame read: yielded once the stream messages logged after it are held
    for m in read(path, [image_topic, *streams]):
        if m.topic != image_topic:
            held.append((stamp_ns(m.decode().header), m))
            continue
        if frame is not None:
            yield with_due(*frame)
        frame = (m, m.decode())
    if frame is not None:
        yield with_due(*frame)


def message_count(path: Path, topic: str) -> int:
    with Reader(path) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)


def image_rgb(msg) -> np.ndarray:
    """RGB uint8 frame of an Image or CompressedImage (rosbags or rclpy message)."""
    return np.ascontiguousarray(message_to_cvimage(msg, "rgb8"))


def mono(msg) -> np.ndarray:
    """A mono8/mono16 Image's pixels (label images, masks)."""
    return np.asarray(message_to_cvimage(msg))


def targets_from_msg(msg) -> list[Target]:
    out = []
    for t in msg.targets:
        box = (t.x_min, t.y_min, t.x_max, t.y_max) if t.has_box else None
        mask = mono(t.mask) > 0 if t.mask.width else None
        out.append(Target(int(t.id), t.label, box, mask))
    return out


def tracks_to_masks(msg, shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """Full-frame bool mask per object of a TrackedObjectArray (all-False when absent)."""
    out = {}
    for obj in msg.objects:
        full = np.zeros(shape, bool)
        if obj.present and obj.mask.width:
            x, y = obj.roi.x_offset, obj.roi.y_offset
            crop = mono(obj.mask) > 0
            full[y:y + crop.shape[0], x:x + crop.shape[1]] = crop[:shape[0] - y, :shape[1] - x]
        out[int(obj.id)] = full
    return out


def tracks_to_positions(msg) -> dict[int, np.ndarray]:
    """3D centroid per object of a TrackedObjectArray that has one (``has_position``)."""
    return {int(o.id): np.array([o.position.x, o.position.y, o.position.z])
            for o in msg.objects if o.has_position}


# -- building messages -----------------------------------------------------------------------------
def image_msg(rgb: np.ndarray, stamp: int, frame_id: str = "camera", compressed: bool = False):
    t = typestore().types
    if compressed:
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return t[COMPRESSED](header=header(stamp, frame_id), format="jpeg", data=jpg.reshape(-1))
    return _raw_image(rgb, "rgb8", stamp, frame_id)


def label_image_msg(labels: np.ndarray, stamp: int, frame_id: str = "camera"):
    return _raw_image(labels.astype(np.uint16), "mono16", stamp, frame_id)


def _raw_image(pixels: np.ndarray, encoding: str, stamp: int, frame_id: str):
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    return typestore().types[IMAGE](header=header(stamp, frame_id), height=h, width=w, encoding=encoding,
                                    is_bigendian=0, step=data.size // max(h, 1), data=data)


def _empty_image():
    return typestore().types[IMAGE](header=header(0), height=0, width=0, encoding="", is_bigendian=0,
                                    step=0, data=np.zeros(0, np.uint8))


def depth_msg(depth_m: np.ndarray, stamp: int, frame_id: str = "camera"):
    """A 16UC1 depth Image in millimetres (a depth camera driver's raw output); NaN and out-of-range are 0."""
    mm = np.nan_to_num(np.round(depth_m * 1000.0), nan=0.0, posinf=0.0, neginf=0.0)
    return _raw_image(np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16), "16UC1", stamp, frame_id)


def camera_info_msg(intr: Intrinsics, shape: tuple[int, int], stamp: int, frame_id: str = "camera"):
    """An undistorted pinhole CameraInfo of ``intr`` for (H, W) frames."""
    t = typestore().types
    k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], float)
    p = np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], float)
    return t["sensor_msgs/msg/CameraInfo"](
        header=header(stamp, frame_id), height=shape[0], width=shape[1], distortion_model="plumb_bob",
        d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def targets_msg(targets: Iterable[Target], stamp: int, frame_id: str = "camera"):
    t = typestore().types
    items = []
    for tg in targets:
        box = tg.box or (0.0, 0.0, 0.0, 0.0)
        mask = (_raw_image((tg.mask > 0).astype(np.uint8) * 255, "mono8", stamp, frame_id)
                if tg.mask is not None else _empty_image())
        items.append(t["hqsmem_ros/msg/Target"](
            id=tg.obj_id, label=tg.label, has_box=tg.box is not None, x_min=float(box[0]), y_min=float(box[1]),
            x_max=float(box[2]), y_max=float(box[3]), mask=mask))
    return t[TARGETS](header=header(stamp, frame_id), targets=items)


def tracks_msg(masks: dict[int, np.ndarray], stamp: int, frame_index: int, frame_id: str = "camera",
               labels: dict[int, str] | None = None, memory_frames: int = 0,
               positions: dict[int, Sequence[float] | None] | None = None):
    """A TrackedObjectArray of full-frame masks (ground truth, offline results): roi + cropped mono8, and the
    3D centroid of each id in ``positions`` (None: not available)."""
    t = typestore().types
    objects = []
    for oid, mask in masks.items():
        xyz = (positions or {}).get(oid)
        x, y, z = (0.0, 0.0, 0.0) if xyz is None else (float(v) for v in xyz)
        box = mask_box(mask)
        x0, y0, x1, y1 = box or (0, 0, 0, 0)
        crop = (_raw_image(mask[y0:y1, x0:x1].astype(np.uint8) * 255, "mono8", stamp, frame_id) if box
                else _empty_image())
        objects.append(t["hqsmem_ros/msg/TrackedObject"](
            id=oid, label=(labels or {}).get(oid, ""), present=box is not None, score=1.0 if box else 0.0,
            refined=False, roi=t["sensor_msgs/msg/RegionOfInterest"](
                x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0, do_rectify=False), mask=crop,
            has_position=xyz is not None,
            position=t["geometry_msgs/msg/Point"](x=x, y=y, z=z),
            extent=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0), depth_pixels=0))
    return t[TRACKS](header=header(stamp, frame_id), frame_index=frame_index, ok=True, status="ok",
                     memory_frames=memory_frames, objects=objects)


# -- writing ---------------------------------------------------------------------------------------
class BagWriter:
    """A new bag (refuses an existing path) with one connection per topic, added on first use."""

    def __init__(self, path: Path, storage: str = "mcap"):
        if Path(path).exists():
            raise FileExistsError(f"{path} exists; choose a new output path")
        self._writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._conns = {}

    def write(self, topic: str, msgtype: str, log_time: int, raw: bytes) -> None:
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        self._writer.write(self._conns[topic], log_time, raw)

    def write_msg(self, topic: str, msg, log_time: int) -> None:
        self.write(topic, msg.__msgtype__, log_time, serialize(msg))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
