"""Property tests of ros/convert.py, the node's conversion and validation layer: random Image,
CompressedImage, TargetArray and RemoveTargets contents. The layer never raises anything but its own
``InputError`` (with a documented reason and a message), accepts every well-formed message, and
round-trips valid ones."""

from __future__ import annotations

import array

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from sensor_msgs.msg import CompressedImage, Image

from hqsmem_ros.core.targets import Rejection, check_targets
from hqsmem_ros.core.types import Target
from hqsmem_ros.msg import Target as TargetMsg, TargetArray
from hqsmem_ros.ros import convert
from hqsmem_ros.ros.convert import InputError

IMAGE_REASONS = {"encoding", "empty_image", "step", "data_size"}
COMPRESSED_REASONS = {"empty_image", "compressed"}
TARGET_REASONS = {"id_range", "duplicate_id", "mask", "box"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

encodings = st.one_of(st.sampled_from(list(convert.ENCODINGS)),
                      st.sampled_from(["rgb16", "32FC1", "16UC1", "bayer_rggb8", "yuv422", "nv21", "", "RGB8"]),
                      st.text(max_size=8))
coords = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-20, 40), st.integers(-20, 40))


@st.composite
def raw_images(draw, encoding=encodings):
    """An Image whose fields are each either consistent or random."""
    enc = draw(encoding)
    h, w = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    channels, dtype = convert.ENCODINGS.get(enc, (3, np.uint8))
    row = w * channels * np.dtype(dtype).itemsize
    step = draw(st.one_of(st.just(row), st.integers(0, 3 * row + 4), st.just(row + draw(st.integers(1, 4)))))
    size = draw(st.one_of(st.just(step * h), st.integers(0, 400)))
    data = draw(st.binary(min_size=size, max_size=size))
    return Image(height=h, width=w, encoding=enc, step=step, is_bigendian=draw(st.booleans()),
                 data=array.array("B", data))


def well_formed(msg: Image) -> bool:
    if msg.encoding not in convert.ENCODINGS or not msg.width or not msg.height:
        return False
    channels, dtype = convert.ENCODINGS[msg.encoding]
    return msg.step >= msg.width * channels * np.dtype(dtype).itemsize and len(msg.data) == msg.step * msg.height


@SETTINGS
@given(raw_images())
def test_any_image_decodes_to_rgb_or_raises_an_input_error_with_its_reason(msg):
    try:
        rgb = convert.decode_image(msg)
    except InputError as exc:
        assert exc.reason in IMAGE_REASONS and str(exc)
        assert not well_formed(msg)
        return
    assert well_formed(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3) and rgb.flags.c_contiguous


@SETTINGS
@given(st.sampled_from(list(convert.ENCODINGS)), st.integers(1, 9), st.integers(1, 9), st.data())
def test_valid_images_round_trip_exactly(encoding, h, w, data):
    channels, dtype = convert.ENCODINGS[encoding]
    shape = (h, w, channels) if channels > 1 else (h, w)
    pixels = np.frombuffer(data.draw(st.binary(min_size=h * w * channels * np.dtype(dtype).itemsize,
                                               max_size=h * w * channels * np.dtype(dtype).itemsize)),
                           dtype).reshape(shape)
    assert np.array_equal(convert.image_to_array(convert.array_to_image(pixels, encoding)), pixels)


@SETTINGS
@given(st.text(max_size=6), st.one_of(st.binary(max_size=64),
                                      st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
                                      st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff\xe0" + b)))
def test_any_compressed_bytes_decode_or_raise_an_input_error_with_its_reason(fmt, payload):
    try:
        rgb = convert.decode_compressed(CompressedImage(format=fmt, data=payload))
    except InputError as exc:
        assert exc.reason in COMPRESSED_REASONS and str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_png_images_round_trip_exactly(h, w, data):
    rgb = np.frombuffer(data.draw(st.binary(min_size=h * w * 3, max_size=h * w * 3)), np.uint8).reshape(h, w, 3)
    png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
    assert np.array_equal(convert.decode_compressed(CompressedImage(format="png", data=png)), rgb)


@st.composite
def raw_targets(draw, shape):
    """A Target message with a random id, maybe a random box, maybe a mask: random or of the image's size."""
    msg = TargetMsg(id=draw(st.integers(1, 6) | st.integers(-3, 0) | st.integers(-2**31, 2**31 - 1)),
                    label=draw(st.text(max_size=4)))
    if draw(st.booleans()):
        msg.has_box = True
        msg.x_min, msg.y_min, msg.x_max, msg.y_max = (float(draw(coords)) for _ in range(4))
    mask = draw(st.sampled_from(["none", "sized", "random"]))
    if mask == "sized":
        bits = np.frombuffer(draw(st.binary(min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])), np.uint8)
        msg.mask = convert.array_to_image(bits.reshape(shape) % 2 * 255, draw(st.sampled_from(convert.MASK_ENCODINGS)))
    elif mask == "random":
        msg.mask = draw(raw_images(st.sampled_from(["mono8", "8UC1", "rgb8", "mono16", "32FC1"])))
    return msg


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([255, convert.MAX_ID]), st.data())
def test_every_target_is_accepted_valid_or_rejected_once_with_its_reason(h, w, max_id, data):
    targets = data.draw(st.lists(raw_targets((h, w)), max_size=6))
    ok, errors = convert.targets_from_msg(TargetArray(targets=targets), max_id)
    ok, more = check_targets(ok, (h, w))
    errors += more
    assert len(ok) + len(errors) == len(targets)
    for exc in errors:
        assert isinstance(exc, Rejection) and exc.reason in TARGET_REASONS and str(exc).startswith("target ")
    ids = [t.id for t in targets]
    for t in ok:
        assert 1 <= t.obj_id <= max_id and ids.count(t.obj_id) == 1
        if t.box is not None:
            x0, y0, x1, y1 = t.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        if t.mask is not None:
            assert t.mask.dtype == bool and t.mask.shape == (h, w) and t.mask.any()
        assert t.box is not None or t.mask is not None


@st.composite
def valid_targets(draw, shape):
    h, w = shape
    x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    box = (x0, y0, draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h)))
    mask = None
    if draw(st.booleans()):
        mask = np.zeros(shape, bool)
        mask[box[1]:box[3], box[0]:box[2]] = draw(st.booleans())
        mask[box[1], box[0]] = True
    return box if draw(st.booleans()) or mask is None else None, mask


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.data())
def test_valid_targets_round_trip_through_a_target_array(h, w, data):
    ids = data.draw(st.lists(st.integers(1, convert.MAX_ID), min_size=1, max_size=5, unique=True))
    sent = [Target(oid, f"o{oid}", *data.draw(valid_targets((h, w)))) for oid in ids]
    got, errors = convert.targets_from_msg(convert.targets_to_msg(sent))
    got, more = check_targets(got, (h, w))
    assert errors + more == []
    for s, g in zip(sent, got, strict=True):
        assert (g.obj_id, g.label, g.box) == (s.obj_id, s.label, s.box)
        assert (g.mask is None) == (s.mask is None) and (s.mask is None or np.array_equal(g.mask, s.mask))


@SETTINGS
@given(st.lists(st.integers(-2**31, 2**31 - 1) | st.integers(0, 8)), st.sets(st.integers(0, 8)))
def test_remove_requests_split_into_known_and_unknown_ids_each_once_in_order(ids, known):
    removed, unknown = convert.split_remove(array.array("i", ids), known)
    assert set(removed) == set(ids) & known and set(unknown) == set(ids) - known
    assert removed == sorted(set(removed), key=ids.index) and unknown == sorted(set(unknown), key=ids.index)


@SETTINGS
@given(st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=30))
def test_accepted_image_stamps_only_increase_between_clock_restarts(stamps):
    last = None
    for stamp in stamps:
        try:
            restarted = convert.check_stamp(stamp, last)
        except InputError as exc:
            assert exc.reason in {"duplicate_stamp", "old_stamp"} and 0 < stamp <= last
            continue
        assert stamp == 0 or last is None or stamp > last or restarted
        if restarted:
            assert last - stamp > convert.STAMP_JUMP_BACK_S * 1e9
        if stamp:
            last = stamp
