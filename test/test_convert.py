"""ros/convert.py without DDS: every encoding round-trips, every malformed input names its problem."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from hqsmem_ros.core.targets import check_targets
from hqsmem_ros.core.types import FrameResult, Object3D, ObjectResult, mask_box
from hqsmem_ros.msg import Target as TargetMsg, TargetArray
from hqsmem_ros.ros import convert
from hqsmem_ros.ros.convert import InputError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)


def native(encoding: str, rgb: np.ndarray = RGB) -> np.ndarray:
    """``rgb`` written in ``encoding``'s own layout, and the RGB the node should read back."""
    return {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "8UC3": rgb[:, :, ::-1],
            "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
            "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
            "mono8": rgb[:, :, 0], "8UC1": rgb[:, :, 0],
            "mono16": rgb[:, :, 0].astype(np.uint16) * 256 + 3}[encoding]


@pytest.mark.parametrize("encoding", list(convert.ENCODINGS))
def test_every_encoding_round_trips_and_decodes_to_rgb(encoding):
    pixels = native(encoding)
    msg = convert.array_to_image(pixels, encoding, Header(frame_id="cam"))
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (6, 7, encoding, "cam")
    back = convert.image_to_array(msg)
    assert back.dtype == pixels.dtype and np.array_equal(back, pixels)
    rgb = convert.decode_image(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    expected = np.repeat(RGB[:, :, :1], 3, axis=2) if pixels.ndim == 2 else RGB
    assert np.array_equal(rgb, expected)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list(convert.ENCODINGS)), st.integers(1, 9), st.integers(1, 9), st.integers(0, 5),
       st.booleans())
def test_padded_rows_and_big_endian_data_read_back_exactly(encoding, h, w, pad, big):
    pixels = native(encoding, RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if big and pixels.dtype == np.uint16:
        pixels_be = pixels.astype(">u2")
    else:
        pixels_be, big = pixels, False
    raw = np.ascontiguousarray(pixels_be).view(np.uint8).reshape(h, -1)
    step = raw.shape[1] + pad
    data = np.zeros((h, step), np.uint8)
    data[:, :raw.shape[1]] = raw
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step,
                data=array.array("B", data.tobytes()))
    assert np.array_equal(convert.image_to_array(msg), pixels)


def image(**fields) -> Image:
    msg = convert.array_to_image(RGB, "rgb8")
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize("msg, reason, text", [
    (image(encoding="yuv422"), "encoding", "encoding 'yuv422' is not supported (rgb8, bgr8, rgba8, bgra8, mono8, "
                                           "mono16, 8UC1, 8UC3)"),
    (image(step=20), "step", "step 20 is shorter than a rgb8 row of width 7 (21 bytes)"),
    (image(data=array.array("B", bytes(100))), "data_size", "data is 100 bytes, expected step*height = 21*6 = 126"),
    (image(width=0, step=0, data=array.array("B")), "empty_image", "image is empty (0x6)"),
    (image(height=0, data=array.array("B")), "empty_image", "image is empty (7x0)"),
])
def test_malformed_images_raise_their_specific_error(msg, reason, text):
    with pytest.raises(InputError) as err:
        convert.decode_image(msg)
    assert err.value.reason == reason and str(err.value) == text


# sensor_msgs/image_encodings.hpp names the node does not read, and spellings that are not encodings.
UNSUPPORTED = ["rgb16", "bgr16", "rgba16", "bgra16", "8UC2", "8UC4", "8SC1", "16UC1", "16SC1", "32SC1", "32FC1",
               "32FC3", "64FC1", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16",
               "yuv422", "UYVY", "YUYV", "yuv422_yuy2", "nv21", "nv24", "", "RGB8", "rgb8 "]


@pytest.mark.parametrize("encoding", UNSUPPORTED)
def test_every_unsupported_encoding_is_rejected_by_name(encoding):
    with pytest.raises(InputError, match=f"encoding '{encoding}' is not supported") as err:
        convert.decode_image(image(encoding=encoding))
    assert err.value.reason == "encoding"


@pytest.mark.parametrize("stamp, last, outcome", [
    (5, None, False), (6, 5, False), (0, 5, False), (7, 0, False),
    (5, 5, "duplicate_stamp"), (4, 5, "old_stamp"), (5 * 10**9 - 10**9, 5 * 10**9, "old_stamp"),
    (5 * 10**9 - 10**9 - 1, 5 * 10**9, True),
])
def test_image_stamps_must_increase_unless_zero_or_the_clock_restarted(stamp, last, outcome):
    if isinstance(outcome, str):
        with pytest.raises(InputError) as err:
            convert.check_stamp(stamp, last)
        assert err.value.reason == outcome
    else:
        assert convert.check_stamp(stamp, last) is outcome


def test_compressed_images_decode_to_rgb_and_corrupt_ones_are_rejected():
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, np.ascontiguousarray(RGB[:, :, ::-1]))[1].tobytes()
        rgb = convert.decode_compressed(CompressedImage(format=ext[1:], data=data))
        assert rgb.shape == RGB.shape and np.abs(rgb.astype(int) - RGB).mean() < (1 if ext == ".png" else 60)
    with pytest.raises(InputError, match=r"compressed image \('jpeg', 5 bytes\) could not be decoded") as err:
        convert.decode_compressed(CompressedImage(format="jpeg", data=b"\xff\xd8xyz"))
    assert err.value.reason == "compressed"
    with pytest.raises(InputError, match="has no data"):
        convert.decode_compressed(CompressedImage(format="png"))


def target_msg(oid, box=None, mask=None, encoding="mono8"):
    msg = TargetMsg(id=oid, label=f"obj{oid}")
    if box is not None:
        msg.has_box = True
        msg.x_min, msg.y_min, msg.x_max, msg.y_max = box
    if mask is not None:
        msg.mask = convert.array_to_image(mask.astype(np.uint8) * 255, encoding)
    return msg


def errors_of(*targets, shape=(6, 7), max_id=convert.MAX_ID):
    ok, errors = convert.targets_from_msg(TargetArray(targets=list(targets)), max_id)
    ok, more = check_targets(ok, shape)
    return ok, [(e.reason, str(e)) for e in errors + more]


def test_valid_targets_pass_with_box_clipped_and_mask_as_bool():
    mask = np.zeros((6, 7), bool)
    mask[1:3, 2:5] = True
    ok, errors = errors_of(target_msg(1, box=(-2.0, 0.5, 4.2, 9.0)), target_msg(2, mask=mask),
                           target_msg(65535, box=(0.0, 0.0, 7.0, 6.0), mask=mask))
    assert errors == []
    assert [t.obj_id for t in ok] == [1, 2, 65535]
    assert ok[0].box == (0, 0, 5, 6) and ok[0].mask is None and ok[0].label == "obj1"
    assert ok[1].mask.dtype == bool and np.array_equal(ok[1].mask, mask) and ok[1].box is None


@pytest.mark.parametrize("target, reason, text", [
    (target_msg(1, box=(10.0, 10.0, 20.0, 20.0)), "box",
     "target 1: box (10.0, 10.0, 20.0, 20.0) lies outside the 7x6 image"),
    (target_msg(1, box=(-9.0, -9.0, -1.0, -1.0)), "box", "lies outside"),
    (target_msg(1, box=(float("nan"), 0.0, 3.0, 3.0)), "box",
     "target 1: box (nan, 0.0, 3.0, 3.0) has a non-finite coordinate"),
    (target_msg(1, box=(3.0, 1.0, 3.0, 4.0)), "box", "has zero or negative area"),
    (target_msg(1, box=(4.0, 1.0, 2.0, 4.0)), "box", "has zero or negative area"),
    (target_msg(1, mask=np.zeros((6, 7), bool)), "mask", "target 1: mask is empty"),
    (target_msg(1, mask=np.ones((3, 3), bool)), "mask", "target 1: mask is 3x3, image is 7x6"),
    (target_msg(1, mask=np.ones((6, 7, 3), bool), encoding="rgb8"), "mask",
     "target 1: mask encoding 'rgb8' is not supported (mono8, 8UC1)"),
    (target_msg(1, box=(0.0, 0.0, 2.0, 2.0), mask=np.pad(np.ones((2, 2), bool), ((4, 0), (5, 0)))), "mask",
     "target 1: mask and box do not overlap"),
    (target_msg(1), "mask", "target 1: neither a box nor a mask"),
    (target_msg(0, box=(0.0, 0.0, 2.0, 2.0)), "id_range", "target 0: id is outside 1..65535"),
    (target_msg(65536, box=(0.0, 0.0, 2.0, 2.0)), "id_range", "target 65536: id is outside 1..65535"),
    (target_msg(-3, box=(0.0, 0.0, 2.0, 2.0)), "id_range", "target -3: id is outside 1..65535"),
])
def test_each_malformed_target_gives_its_specific_error(target, reason, text):
    ok, errors = errors_of(target)
    assert ok == [] and len(errors) == 1
    assert errors[0][0] == reason and text in errors[0][1]


def test_mask_with_a_wrong_step_is_rejected_as_a_mask_problem():
    bad = target_msg(1, mask=np.ones((6, 7), bool))
    bad.mask.step = 3
    assert errors_of(bad)[1] == [("mask", "target 1: mask step 3 is shorter than a mono8 row of width 7 (7 bytes)")]


def test_duplicate_ids_in_one_message_are_all_rejected_and_mono8_limits_ids():
    box = (0.0, 0.0, 2.0, 2.0)
    ok, errors = errors_of(target_msg(4, box=box), target_msg(5, box=box), target_msg(4, box=box))
    assert [t.obj_id for t in ok] == [5]
    assert errors == [("duplicate_id", "target 4: id appears 2 times in one message")] * 2
    ok, errors = errors_of(target_msg(256, box=box), max_id=255)
    assert errors == [("id_range", "target 256: id is outside 1..255")]


def result(*objects, ok=True, status="ok"):
    return FrameResult(7, list(objects), ok=ok, status=status, memory_frames=3)


def obj(oid, mask, label="x"):
    present = bool(mask.any())
    return ObjectResult(oid, label, present, 0.9 if present else 0.0, mask, mask_box(mask), refined=oid == 1)


def test_results_become_tracks_with_cropped_masks_and_the_input_header():
    m1 = np.zeros((6, 7), bool)
    m1[1:4, 2:6] = True
    m1[2, 3] = False
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = convert.result_to_msg(result(obj(1, m1, "cup"), obj(2, np.zeros((6, 7), bool))), header)
    assert msg.header == header and msg.frame_index == 7 and msg.ok and msg.memory_frames == 3
    one, two = msg.objects
    assert (one.id, one.label, one.present, one.refined) == (1, "cup", True, True)
    assert abs(one.score - 0.9) < 1e-6
    assert (one.roi.x_offset, one.roi.y_offset, one.roi.width, one.roi.height) == (2, 1, 4, 3)
    assert one.mask.encoding == "mono8" and one.mask.header == header
    assert np.array_equal(convert.image_to_array(one.mask), m1[1:4, 2:6].astype(np.uint8) * 255)
    assert not two.present and two.mask.width == 0 and two.roi.width == 0 and two.score == 0.0


def test_a_fault_result_says_so():
    msg = convert.result_to_msg(result(ok=False, status="RuntimeError: boom"), Header())
    assert not msg.ok and msg.status == "RuntimeError: boom"


def test_label_image_holds_ids_in_mono16_and_mono8():
    a = np.zeros((6, 7), bool)
    a[:3] = True
    b = np.zeros((6, 7), bool)
    b[2:] = True
    labels = convert.label_array(result(obj(300, a), obj(2, b), obj(5, np.zeros((6, 7), bool))), (6, 7), "mono16")
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {2, 300}
    assert (labels[2] == 300).all()  # overlaps: the higher id on top
    small = convert.label_array(result(obj(2, b)), (6, 7), "mono8")
    assert small.dtype == np.uint8 and (small[3] == 2).all() and (small[0] == 0).all()
    msg = convert.array_to_image(labels, "mono16")
    assert np.array_equal(convert.image_to_array(msg), labels)


def test_a_jpeg_libjpeg_repairs_is_decoded_and_its_warning_reported_not_printed(capfd):
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    good = cv2.imencode(".jpg", noise)[1].tobytes()
    data = bytearray(good)
    data[len(data) // 2:len(data) // 2 + 6] = b"\xff\xd3\xff\xd5\x12\x34"  # stray markers inside the scan
    warnings = []
    rgb = convert.decode_compressed(CompressedImage(format="jpeg", data=bytes(data)), on_repaired=warnings.append)
    assert rgb.shape == noise.shape and len(warnings) == 1 and "Corrupt JPEG data" in warnings[0]
    assert "Corrupt JPEG" not in capfd.readouterr().err
    convert.decode_compressed(CompressedImage(format="jpeg", data=good), on_repaired=warnings.append)
    assert len(warnings) == 1  # an intact JPEG reports nothing


def test_compressed_headers_give_the_size_before_decoding_and_bombs_are_refused():
    import struct
    import zlib
    from sensor_msgs.msg import CompressedImage
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))[1].tobytes()
        assert convert.compressed_shape(CompressedImage(format=ext, data=data)) == (37, 53)
    # 69 bytes that declare 40000x40000: refused from the header, nothing decoded
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(convert.InputError, match="40000x40000 = 1600000000 pixels, over max_image_pixels") as exc:
        convert.compressed_shape(CompressedImage(format="png", data=png), max_pixels=4096 * 2160)
    assert exc.value.reason == "too_large"
    with pytest.raises(convert.InputError) as exc:
        convert.compressed_shape(CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xda\x00\x02"))
    assert exc.value.reason == "compressed"
    with pytest.raises(convert.InputError) as exc:  # the header passes, the data does not decode
        convert.decode_compressed(CompressedImage(format="png", data=png))
    assert exc.value.reason == "compressed"


def test_id_ranges_make_one_short_line_of_many_ids():
    assert convert.id_ranges([5, 1, 2, 3, 9]) == "1..3, 5, 9"
    assert convert.id_ranges(range(1, 100_001)) == "1..100000"
    assert convert.id_ranges(range(0, 40, 2), limit=3) == "0, 2, 4, ..."


# -- depth ---------------------------------------------------------------------------------------------
def depth_image(pixels, encoding, big=False, **fields):
    dtype = np.dtype(pixels.dtype).newbyteorder(">" if big else "<")
    data = np.ascontiguousarray(pixels, dtype=dtype).tobytes()
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=big,
                step=pixels.shape[1] * pixels.itemsize)
    msg.data = array.array("B", data)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize("big", [False, True])
def test_depth_images_decode_to_metres_with_holes_as_nan(big):
    mm = np.array([[0, 1000, 2345], [65535, 1, 500]], np.uint16)
    out = convert.depth_to_array(depth_image(mm, "16UC1", big), (2, 3))
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    assert out[~np.isnan(out)] == pytest.approx(mm[mm > 0] / 1000.0)
    m = np.array([[1.5, np.nan, 0.0]], np.float32)
    out = convert.depth_to_array(depth_image(m, "32FC1", big), (1, 3))
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1:]).all()


@pytest.mark.parametrize("msg, shape, reason, text", [
    (depth_image(np.zeros((2, 3), np.uint16), "mono16"), (2, 3), "depth_encoding", "'mono16' is not supported"),
    (depth_image(np.zeros((2, 3), np.uint8), "rgb8"), (2, 3), "depth_encoding", "16UC1, 32FC1"),
    (depth_image(np.zeros((2, 3), np.uint16), "16UC1"), (4, 6), "depth_size", "depth is 3x2, the colour frame 6x4"),
    (depth_image(np.zeros((2, 3), np.uint16), "16UC1", step=4), (2, 3), "depth_data", "step 4"),
    (depth_image(np.zeros((2, 3), np.float32), "32FC1", height=3), (3, 3), "depth_data", "24 bytes"),
])
def test_bad_depth_images_get_their_specific_rejection(msg, shape, reason, text):
    with pytest.raises(InputError, match=text) as err:
        convert.depth_to_array(msg, shape)
    assert err.value.reason == reason


def test_camera_info_gives_intrinsics_and_bad_ones_are_rejected():
    k = [525.0, 0.0, 319.5, 0.0, 530.0, 239.5, 0.0, 0.0, 1.0]
    intr = convert.camera_info_to_intrinsics(CameraInfo(width=640, height=480, k=k), (480, 640))
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (525.0, 530.0, 319.5, 239.5)
    assert convert.camera_info_to_intrinsics(CameraInfo(k=k), (480, 640)) == intr  # size unset: taken as given
    for info, text in [(CameraInfo(width=640, height=480), "focal length must be positive"),  # all-zero K
                       (CameraInfo(width=640, height=480, k=k[:4] + [-530.0] + k[5:]), "fy=-530"),
                       (CameraInfo(width=320, height=240, k=k), "camera_info is for 320x240")]:
        with pytest.raises(InputError, match=text) as err:
            convert.camera_info_to_intrinsics(info, (480, 640))
        assert err.value.reason == "camera_info"


def test_results_carry_3d_fields_when_present_and_zeros_otherwise():
    m = np.zeros((6, 7), bool)
    m[1:4, 2:6] = True
    located = obj(1, m)
    located.position = Object3D((0.1, -0.2, 2.5), (0.3, 0.2, 0.05), 11, True)
    too_few = obj(2, m)
    too_few.position = Object3D((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 3, False)
    absent = obj(3, np.zeros((6, 7), bool))
    absent.position = Object3D((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 50, True)  # a stale estimate is not published
    header = Header(frame_id="camera_color_optical_frame")
    msg = convert.result_to_msg(result(located, too_few, absent, obj(4, m)), header)
    one, two, three, four = msg.objects
    assert one.has_position and one.depth_pixels == 11
    assert (one.position.x, one.position.y, one.position.z) == pytest.approx((0.1, -0.2, 2.5))
    assert (one.extent.x, one.extent.y, one.extent.z) == pytest.approx((0.3, 0.2, 0.05))
    assert not two.has_position and two.depth_pixels == 3 and two.position.z == 0.0
    for none in (three, four):
        assert not none.has_position and none.depth_pixels == 0 and none.position.z == 0 and none.extent.x == 0
    poses = convert.positions_msg(result(too_few, absent, located), header)
    assert poses.header == header and len(poses.poses) == 1
    p = poses.poses[0]
    assert (p.position.x, p.position.y, p.position.z) == pytest.approx((0.1, -0.2, 2.5))
    assert (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) == (0.0, 0.0, 0.0, 1.0)
