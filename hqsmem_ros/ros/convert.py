"""ROS messages <-> numpy, and validation of every input. Pure functions: no node, no DDS.

Every malformed input raises (or returns) an ``InputError`` whose ``reason`` is a short key the node
counts in diagnostics and whose text is the log line's detail, e.g.
``encoding 'yuv422' is not supported (rgb8, bgr8, ...)``.
"""

from __future__ import annotations

import array
from collections import Counter
from typing import Callable, Collection, Iterable

import cv2
import numpy as np
import simplejpeg
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseArray, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from ..core.depth import DEPTH_ENCODINGS, Intrinsics, depth_metres, intrinsics_from_k
from ..core.targets import Rejection
from ..core.types import FrameResult, Object3D, Target
from ..msg import Target as TargetMsg, TargetArray, TrackedObject, TrackedObjectArray

# encoding -> (channels, dtype). 8UC1/8UC3 carry no colour order: read as mono8/bgr8 (OpenCV's default).
ENCODINGS: dict[str, tuple[int, type]] = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8), "mono16": (1, np.uint16), "8UC1": (1, np.uint8), "8UC3": (3, np.uint8),
}
MASK_ENCODINGS = ("mono8", "8UC1")
_DEPTH_TYPES: dict[str, tuple[int, type]] = {"16UC1": (1, np.uint16), "32FC1": (1, np.float32)}
MAX_ID = 65535
MAX_REQUEST_ITEMS = 4096  # targets or ids in one message or request; more is rejected whole
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class InputError(Rejection):
    """A rejected message; ``reason`` names the kind (counted), the text says exactly what is wrong."""


# -- images ------------------------------------------------------------------------------------------
def _check_size(width: int, height: int, max_pixels: int | None, what: str) -> tuple[int, int]:
    if width == 0 or height == 0:
        raise InputError("empty_image", f"{what} is empty ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError("too_large", f"{what} is {width}x{height} = {width * height} pixels, over "
                                      f"max_image_pixels={max_pixels}")
    return height, width


def image_shape(msg: Image, encodings: tuple[str, ...] | None = None, max_pixels: int | None = None,
                types: dict[str, tuple[int, type]] = ENCODINGS) -> tuple[int, int]:
    """(H, W) of a raw Image after every check that needs no copy of its data (cheap: header and length);
    ``types``: encoding -> (channels, dtype) of the images this input takes (colour frames by default)."""
    allowed = encodings or tuple(types)
    if msg.encoding not in allowed:
        raise InputError("encoding", f"encoding '{msg.encoding}' is not supported ({', '.join(allowed)})")
    shape = _check_size(msg.width, msg.height, max_pixels, "image")
    channels, dtype = types[msg.encoding]
    row = msg.width * channels * np.dtype(dtype).itemsize
    if msg.step < row:
        raise InputError("step", f"step {msg.step} is shorter than a {msg.encoding} row of width {msg.width} "
                                 f"({row} bytes)")
    if len(msg.data) != msg.step * msg.height:
        raise InputError("data_size", f"data is {len(msg.data)} bytes, expected step*height = "
                                      f"{msg.step}*{msg.height} = {msg.step * msg.height}")
    return shape


def image_to_array(msg: Image, encodings: tuple[str, ...] | None = None,
                   types: dict[str, tuple[int, type]] = ENCODINGS) -> np.ndarray:
    """The pixels of ``msg`` as (H, W) or (H, W, C) in the encoding's own dtype and channel order."""
    image_shape(msg, encodings, types=types)
    channels, dtype = types[msg.encoding]
    row = msg.width * channels * np.dtype(dtype).itemsize
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :row]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order)).astype(dtype, copy=False)
    return pixels.reshape(msg.height, msg.width, channels) if channels > 1 else pixels.reshape(msg.height, msg.width)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image holding ``pixels`` (already in ``encoding``'s channel order and dtype), little-endian."""
    channels, dtype = ENCODINGS[encoding]
    pixels = np.ascontiguousarray(pixels, dtype=np.dtype(dtype).newbyteorder("<"))
    if pixels.shape[2:] not in ((), (channels,)) or (channels > 1) != (pixels.ndim == 3):
        raise ValueError(f"{encoding} needs {channels} channel(s), got shape {pixels.shape}")
    h, w = pixels.shape[:2]
    msg = Image(header=header or Header(), height=h, width=w, encoding=encoding, is_bigendian=False,
                step=w * channels * pixels.itemsize)
    msg.data = array.array("B", pixels.tobytes())  # array.array skips the per-byte field check
    return msg


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) from ``image_to_array``'s output; mono16 keeps its high byte."""
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding in ("bgr8", "bgra8", "8UC3"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def decode_image(msg: Image) -> np.ndarray:
    return to_rgb(image_to_array(msg), msg.encoding)


def compressed_shape(msg: CompressedImage, max_pixels: int | None = None) -> tuple[int, int]:
    """(H, W) that a PNG or JPEG CompressedImage declares in its header, read without decoding it, so that a
    small file declaring a huge image is refused before any memory is spent on it."""
    data = bytes(msg.data)
    what = f"compressed image ({msg.format!r}, {len(msg.data)} bytes)"
    if not data:
        raise InputError("empty_image", f"compressed image ({msg.format!r}) has no data")
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:  # IHDR comes first
        return _check_size(int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), max_pixels, what)
    if data.startswith(b"\xff\xd8"):
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            pass
        else:
            return _check_size(width, height, max_pixels, what)
    raise InputError("compressed", f"{what} has no PNG or JPEG header that declares its size")


def decode_compressed(msg: CompressedImage, on_repaired: Callable[[str], None] | None = None) -> np.ndarray:
    """RGB uint8 from a JPEG/PNG CompressedImage (check its header with ``compressed_shape`` first). A JPEG
    with corrupt data that libjpeg-turbo can repair (a truncated or damaged scan) is decoded as repaired and
    its warning goes to ``on_repaired``, not to stderr."""
    data = bytes(msg.data)
    if not data:
        raise InputError("empty_image", f"compressed image ({msg.format!r}) has no data")
    rgb = None
    if data.startswith(b"\xff\xd8"):
        try:
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError as strict:  # libjpeg's warnings are errors in strict mode: try again, repaired
            try:
                rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
            except ValueError:
                pass
            else:
                if on_repaired:
                    on_repaired(str(strict))
    elif data.startswith(_PNG_SIGNATURE):
        try:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:  # OpenCV's own limits (e.g. CV_IO_MAX_IMAGE_PIXELS): the same answer as unreadable data
            bgr = None
        rgb = None if bgr is None or bgr.size == 0 else np.ascontiguousarray(bgr[:, :, ::-1])
    if rgb is None:
        raise InputError("compressed", f"compressed image ({msg.format!r}, {len(msg.data)} bytes) could not be "
                                       "decoded")
    return rgb


# -- depth -------------------------------------------------------------------------------------------
def check_depth_encoding(msg: Image) -> None:
    """The header check a depth Image gets on arrival: ``depth_encoding`` unless 16UC1 or 32FC1."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise InputError("depth_encoding", f"depth encoding '{msg.encoding}' is not supported "
                                           f"({', '.join(DEPTH_ENCODINGS)})")


def depth_to_array(msg: Image, shape: tuple[int, int]) -> np.ndarray:
    """float32 metres (NaN = hole) of a depth Image aligned to colour frames of ``shape`` = (H, W)."""
    check_depth_encoding(msg)
    if (msg.height, msg.width) != tuple(shape):
        raise InputError("depth_size", f"depth is {msg.width}x{msg.height}, the colour frame {shape[1]}x{shape[0]} "
                                       "(the depth must be aligned to the colour camera)")
    try:  # the raw Image checks (step, data length) and decoding, with the depth encodings' types
        pixels = image_to_array(msg, types=_DEPTH_TYPES)
    except InputError as exc:
        raise InputError("depth_data", f"depth {exc}") from None
    return depth_metres(pixels, msg.encoding)


def camera_info_to_intrinsics(msg: CameraInfo, shape: tuple[int, int]) -> Intrinsics:
    """Pinhole intrinsics of a CameraInfo for colour frames of ``shape``; ``camera_info`` InputError when it
    has no usable focal length or is for another image size (a zero size is taken as unset)."""
    if msg.width and msg.height and (msg.height, msg.width) != tuple(shape):
        raise InputError("camera_info", f"camera_info is for {msg.width}x{msg.height}, the colour frame is "
                                        f"{shape[1]}x{shape[0]}")
    try:
        return intrinsics_from_k(msg.k)
    except Rejection as exc:  # this module's inputs are refused as InputError (the log's prefix names the topic)
        raise InputError(exc.reason, str(exc)) from None


def _fill_3d(msg: TrackedObject, obj: Object3D) -> None:
    msg.depth_pixels = obj.pixels
    if obj.valid:
        msg.has_position = True
        msg.position = Point(x=obj.centroid[0], y=obj.centroid[1], z=obj.centroid[2])
        msg.extent = Vector3(x=obj.extent[0], y=obj.extent[1], z=obj.extent[2])


def positions_msg(result: FrameResult, header: Header) -> PoseArray:
    """Centroids of the present objects that have one, in id order, as a PoseArray in the image's frame
    (identity orientation: a mask gives no orientation); for RViz/Foxglove."""
    out = PoseArray(header=header)
    for obj in sorted(result.objects, key=lambda o: o.obj_id):
        if obj.present and obj.position is not None and obj.position.valid:
            x, y, z = obj.position.centroid
            out.poses.append(Pose(position=Point(x=x, y=y, z=z)))
    return out


# -- stamps ------------------------------------------------------------------------------------------
STAMP_JUMP_BACK_S = 1.0  # further back than this is a restarted clock (bag loop, simulation reset), not reordering


def stamp_msg(ns: int) -> Time:
    """builtin_interfaces/Time of a stamp in nanoseconds."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def check_stamp(stamp_ns: int, last_ns: int | None) -> bool:
    """Order of an image stamp against the last accepted image's (``last_ns``; None: none yet).

    Raises ``duplicate_stamp`` for an equal stamp and ``old_stamp`` for an older one up to
    STAMP_JUMP_BACK_S back: the tracker steps forward in time, and a frame it has seen or one from
    its past would corrupt the propagation. Returns True for a jump back further than that (the
    clock restarted: the image is accepted and ordering restarts from it). Zero stamps (sources
    that stamp nothing) always pass."""
    if stamp_ns == 0 or last_ns is None or stamp_ns > last_ns:
        return False
    if stamp_ns == last_ns:
        raise InputError("duplicate_stamp", f"stamp {stamp_ns * 1e-9:.9f} repeats the last accepted image's")
    if last_ns - stamp_ns <= STAMP_JUMP_BACK_S * 1e9:
        raise InputError("old_stamp", f"stamp {stamp_ns * 1e-9:.9f} is older than the last accepted image's "
                                      f"({last_ns * 1e-9:.9f})")
    return True


# -- targets -----------------------------------------------------------------------------------------
def targets_from_msg(msg: TargetArray, max_id: int = MAX_ID) -> tuple[list[Target], list[InputError]]:
    """Targets of one message that pass the checks that need no image; one error per rejected target."""
    counts = Counter(t.id for t in msg.targets)
    targets, errors = [], []
    for t in msg.targets:
        try:
            if not 1 <= t.id <= max_id:
                raise InputError("id_range", f"target {t.id}: id is outside 1..{max_id}")
            if counts[t.id] > 1:
                raise InputError("duplicate_id", f"target {t.id}: id appears {counts[t.id]} times in one message")
            mask = None
            if t.mask.width or t.mask.height or len(t.mask.data):
                try:
                    mask = image_to_array(t.mask, MASK_ENCODINGS) != 0
                except InputError as exc:
                    raise InputError("mask", f"target {t.id}: mask {exc}") from None
            box = (t.x_min, t.y_min, t.x_max, t.y_max) if t.has_box else None
            targets.append(Target(t.id, t.label, box, mask))
        except InputError as exc:
            errors.append(exc)
    return targets, errors


def targets_to_msg(targets: list[Target], header: Header | None = None) -> TargetArray:
    """The TargetArray a client sends for core ``targets`` (box and/or mask): the inverse of ``targets_from_msg``."""
    out = TargetArray(header=header or Header())
    for t in targets:
        msg = TargetMsg(id=t.obj_id, label=t.label)
        if t.box is not None:
            msg.has_box = True
            msg.x_min, msg.y_min, msg.x_max, msg.y_max = (float(v) for v in t.box)
        if t.mask is not None:
            msg.mask = array_to_image(np.asarray(t.mask, bool).astype(np.uint8) * 255, "mono8")
        out.targets.append(msg)
    return out


def id_ranges(ids: Iterable[int], limit: int = 8) -> str:
    """'1..5, 9, 12..40' for sorted ids, at most ``limit`` runs (then '...'): one log line for many ids."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in runs[:limit])
    return text + (", ..." if len(runs) > limit else "")


def split_remove(ids: Iterable[int], known: Collection[int]) -> tuple[list[int], list[int]]:
    """A RemoveTargets request's ids, each once in request order: (known ones, unknown ones)."""
    unique = list(dict.fromkeys(ids))
    return [i for i in unique if i in known], [i for i in unique if i not in known]


# -- results -----------------------------------------------------------------------------------------
def result_to_msg(result: FrameResult, header: Header) -> TrackedObjectArray:
    """The tracks message for one processed frame; masks are mono8 (255 = object) cropped to the roi."""
    out = TrackedObjectArray(header=header, frame_index=result.frame_index, ok=result.ok, status=result.status,
                             memory_frames=result.memory_frames)
    for obj in result.objects:
        msg = TrackedObject(id=obj.obj_id, label=obj.label, present=obj.present, score=float(obj.score),
                            refined=obj.refined)
        if obj.present and obj.box is not None:
            x0, y0, x1, y1 = obj.box
            msg.roi = RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0)
            crop = obj.mask[y0:y1, x0:x1].astype(np.uint8) * 255
            msg.mask = array_to_image(crop, "mono8", header)
            if obj.position is not None:
                _fill_3d(msg, obj.position)
        out.objects.append(msg)
    return out


def label_array(result: FrameResult, shape: tuple[int, int], encoding: str) -> np.ndarray:
    """Full-frame label image: pixel = id of the present object covering it (higher ids on top), 0 = none."""
    labels = np.zeros(shape, np.uint16 if encoding == "mono16" else np.uint8)
    for obj in sorted(result.objects, key=lambda o: o.obj_id):
        if obj.present:
            labels[obj.mask] = obj.obj_id
    return labels
