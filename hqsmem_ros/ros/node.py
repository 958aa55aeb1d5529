"""The ``hqsmem_tracker`` lifecycle node: a thin adapter around ``core.session.TrackingSession``.

    configure   read and check the parameters, build the tracker (says which backend and why),
                create publishers and services, start the worker thread
    activate    subscribe to ``image`` (or ``image/compressed``) and ``targets`` (and with ``depth.enabled``
                ``depth`` and ``camera_info``); publish
    deactivate  unsubscribe, drop waiting frames; the tracker keeps its objects
    cleanup     stop the worker, release the tracker

The executor only checks headers and queues (no decoding: ``frames.FrameBuffer`` holds the messages);
the worker thread decodes the one frame it takes, steps the session on it and publishes exactly one
``tracks`` message per processed frame. What happens to objects across frames (target checks, the
resolution policy, fault recovery) is the session's; the node converts, counts, logs and publishes.

Inputs in order: an image whose stamp equals or is older than the last accepted image's is rejected
(reasons ``duplicate_stamp``, ``old_stamp``: logged, counted in /diagnostics as ``rejected.<reason>``),
since the tracker only steps forward in time; a stamp more than ``convert.STAMP_JUMP_BACK_S`` older
is a restarted clock (bag loop, simulation reset): accepted, logged, counted as ``stamp_jumps_back``,
objects kept. Zero stamps are never checked; activation restarts the ordering.

Too many images: the executor takes an image message only when the worker would take it at once
(``gate.FrameGate``); until then frames wait in the subscription's queue (sensor-data QoS: keep last 1,
so the newest) and the ones overwritten there are counted from the publishers' sequence numbers
(``frames_dropped_in_queue``). ``frames.FrameBuffer`` holds the last ``frame_ring_size`` frames taken;
any it skips are dropped and counted (frames_received = frames_processed + frames_dropped +
frames_waiting + rejected_images_total). No callback raises out of
the executor (``_guarded``): an unexpected exception is a counted ``internal_error``.

3D (``depth.enabled``): the executor checks a depth image's header (encoding) and holds it in a
``core.pairing.StampRing`` of ``depth.ring_size``, and keeps the latest valid camera_info's intrinsics.
The worker pairs the frame it takes with the depth of its stamp (or the nearest within
``depth.pairing_tolerance_s``), decodes only that one against the frame's size, and steps the session
with it; no pair or no camera_info yet means no 3D for that frame (counted: ``depth_unpaired``,
``depth_no_camera_info``). Bad depth or camera_info is a counted, logged rejection of its own kind
(``rejected_depth.<reason>``, ``rejected_camera_info.<reason>``); tracking goes on without 3D.
``tracks`` then carries the 3D fields and ``tracks/positions`` (geometry_msgs/PoseArray, the image's
header) the present objects' centroids.

Degraded states (the session's policies, logged and counted here):
- frames of another size are refused until the size persists (``tracker.resolution_change_frames``);
  then tracking restarts on it (the objects' masks no longer fit) and targets sent for it start;
- ``tracker.fault_limit`` consecutive tracker faults reset the tracker and restart every object from its
  last good mask on the next frame; if faults go on, the next reset restarts nothing (no good mask since);
- an error outside the tracker (e.g. publishing) is logged and the worker goes on with the next frame;
  a shutdown (SIGINT/SIGTERM) that lands mid-frame ends the worker without a traceback.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidHandle, InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.subscription import MessageInfo
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from ..core.config import warn_deprecated
from ..core.depth import Intrinsics
from ..core.factory import Settings, build_tracker
from ..core.pairing import StampRing
from ..core.session import Outcome, TrackingSession
from ..core.targets import Rejection
from ..core.tracker import HQSMemTracker
from ..msg import TargetArray, TrackedObjectArray
from ..srv import AddTargets, RemoveTargets
from . import convert, params, transport
from .diagnostics import NodeStats
from .frames import FrameBuffer, Job
from .gate import FrameGate
from .overlay import draw_overlay

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
REPEAT_LOG_PERIOD_S = 5.0


def sensor_qos() -> QoSProfile:
    """Sensor-data QoS (best effort, keep last 1), a new profile each time: rclpy writes a subscription's
    qos_overrides.<topic>.subscription.* parameters into the profile it is given."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _guarded(kind: str):
    """No callback may raise out of the executor (that ends the process): an unexpected exception becomes a
    counted ``internal_error`` rejection of ``kind``, logged with its type; a service still answers."""
    def wrap(callback):
        @functools.wraps(callback)
        def guarded(self, *args):
            try:
                return callback(self, *args)
            except Exception as exc:
                self._stats.reject("internal_error", kind)
                # throttled per callback: one callback's repeated fault must not hide another's
                name = callback.__name__[1:]
                self._log_throttled(f"internal_error.{name}", f"{name}: internal_error: {type(exc).__name__}: {exc}",
                                    error=True)
                if kind == "requests":  # a service: (request, response)
                    response = args[1]
                    response.success, response.message = False, f"internal_error: {type(exc).__name__}: {exc}"
                    return response
                return None
        return guarded
    return wrap


class TrackerNode(LifecycleNode):
    def __init__(self, *, tracker_factory: Callable[[Settings], tuple[HQSMemTracker, str]] = build_tracker,
                 **node_kwargs):
        super().__init__(params.NODE_NAME, **node_kwargs)
        self._build_tracker = tracker_factory
        self._specs = {spec.name: spec for spec in params.table()}
        self._param_problems = self._declare_parameters()
        self.add_pre_set_parameters_callback(self._rename_deprecated)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stats = NodeStats()
        self._last_logged: dict[str, float] = {}
        self.session: TrackingSession | None = None
        self._last_stamp: int | None = None  # of the last accepted image (executor side)
        self._compute: ThreadPoolExecutor | None = None  # the worker's one thread (configure builds on it)
        self._worker: Future | None = None  # the frame loop (``_work``) running there
        self._stop = threading.Event()
        self._inputs: list = []
        self._active = False
        self._depth_ring: StampRing[Image] | None = None  # depth.enabled: raw depth messages by stamp
        self._depth_lock = threading.Lock()  # the ring: the executor adds, the worker pairs
        self._intrinsics: Intrinsics | None = None  # of the latest valid camera_info (executor writes)

    # -- parameters ------------------------------------------------------------------------------
    def _declare_parameters(self) -> dict[str, str]:
        """Declare the table; a bad override is kept as a problem that fails configure (not the constructor).
        A value given under a deprecated name is the new name's default: an override of the new name wins."""
        problems = {}
        given = self._deprecated_overrides()
        for spec in self._specs.values():
            descriptor = params.descriptor(spec)
            default = spec.default
            if spec.name in given:
                problem = spec.check(given[spec.name])
                if problem:
                    problems[spec.name] = problem
                else:
                    default = type(spec.default)(given[spec.name])  # an int given for a float
            try:
                self.declare_parameter(spec.name, default, descriptor)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                problems[spec.name] = str(exc)
                self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True)
        return problems

    def _deprecated_overrides(self) -> dict:
        """Values a params file or the command line gives under deprecated names, by new name. rclpy hands an
        override only to a declared name, so each old name is declared just to read it, then undeclared."""
        given = {}
        for old, new in params.DEPRECATED.items():
            value = self.declare_parameter(old, None, ParameterDescriptor(dynamic_typing=True)).value
            self.undeclare_parameter(old)
            if value is not None:
                warn_deprecated(old, new, self.get_logger().warning)
                given[new] = value
        return given

    def _rename_deprecated(self, changed: list[Parameter]) -> list[Parameter]:
        """A set under a deprecated name sets the new name (rclpy calls this before checking the names)."""
        renamed = []
        for p in changed:
            if p.name in params.DEPRECATED:
                warn_deprecated(p.name, params.DEPRECATED[p.name], self.get_logger().warning)
                p = Parameter(params.DEPRECATED[p.name], p.type_, p.value)
            renamed.append(p)
        return renamed

    def _values(self) -> dict:
        return {name: self.get_parameter(name).value for name in self._specs}

    def _on_set_parameters(self, changed) -> SetParametersResult:
        changes = {p.name: p.value for p in changed if p.name in self._specs}
        if not changes:
            return SetParametersResult(successful=True)
        if self.session is not None:
            fixed = [n for n in changes if not params.applies_at_run_time(self._specs[n])]
            if fixed:
                return SetParametersResult(successful=False, reason=(
                    f"{', '.join(fixed)} cannot change while the node is configured (cleanup, set, configure)"))
        problems = [p for name, value in changes.items() for p in [self._specs[name].check(value)] if p]
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        for name in changes:
            self._param_problems.pop(name, None)
        if self.session is not None:  # configured: every other value is valid, so this cannot fail
            node_config, settings = params.split({**self._values(), **changes})
            self.session.configure(settings.core)
            self._config, self._settings = node_config, settings
            self.get_logger().info("applied " + ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        return SetParametersResult(successful=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        problems = [f"{name}: {problem}" for name, problem in self._param_problems.items()]
        try:
            self._config, self._settings = params.split(self._values())
        except ValueError as exc:
            problems += str(exc).split("; ")
        for problem in problems:
            log.error(f"configure failed: parameter {problem}")
        if problems:
            return FAILURE
        # Built on the thread that will track: torch's OpenMP keeps a thread pool per calling thread, and with
        # a second one (building on the executor thread made it) libgomp throttles its spin-waits when threads
        # outnumber cores: 78 -> 105 ms per frame with 3 objects on 2 cores, the same tracker and frames.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqsmem_worker")
        try:
            tracker, backend_line = self._compute.submit(self._build_tracker, self._settings).result()
        except Exception as exc:  # any backend may fail to build (weights, device): say so, stay unconfigured
            log.error(f"configure failed: building the tracker (backend={self._settings.backend}): "
                      f"{type(exc).__name__}: {exc}")
            self._compute.shutdown()
            self._compute = None
            return FAILURE
        log.info(backend_line)
        self.session = TrackingSession(tracker, self._settings.depth)
        self._backend_name, self._device = tracker.backend.name, tracker.backend.device
        self._buffer = FrameBuffer(self._config.frame_ring_size, on_wait=self._wake_executor)
        self._decode = (functools.partial(convert.decode_compressed, on_repaired=self._on_repaired)
                        if self._config.compressed else convert.decode_image)
        self._tracks_pub = self.create_lifecycle_publisher(TrackedObjectArray, "tracks", OUTPUT_QOS)
        self._label_pub = self.create_lifecycle_publisher(Image, "tracks/label_image", OUTPUT_QOS)
        self._overlay_pub = self.create_lifecycle_publisher(Image, "tracks/overlay", OUTPUT_QOS)
        depth = self._settings.depth
        self._depth_ring = StampRing(depth.ring_size) if depth.enabled else None
        self._positions_pub = (self.create_lifecycle_publisher(PoseArray, "tracks/positions", OUTPUT_QOS)
                               if depth.enabled else None)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        # remove_targets and reset wait for the frame in progress (the tracker lock): at most one frame.
        self._service_handles = [
            self.create_service(AddTargets, "add_targets", self._on_add_targets),
            self.create_service(RemoveTargets, "remove_targets", self._on_remove_targets),
            self.create_service(Trigger, "reset", self._on_reset),
        ]
        self._stop.clear()
        self._worker = self._compute.submit(self._work)
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._last_stamp = None  # before subscribing: the first image of this activation sets it
        # Sensor-data QoS by default; users change it the standard way, through the
        # qos_overrides.<topic>.subscription.{reliability,depth,history} parameters rclpy declares here.
        overridable = QoSOverridingOptions.with_default_policies
        self._inputs = []
        if self._depth_ring is not None:
            # Created before the image subscription: the executor serves ready subscriptions in creation
            # order, so a depth frame that arrived with its colour frame is held before the worker pairs.
            self._intrinsics = None
            self._inputs += [
                self.create_subscription(Image, "depth", self._on_depth, sensor_qos(),
                                         qos_overriding_options=overridable()),
                self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sensor_qos(),
                                         qos_overriding_options=overridable())]
        # image_transport's naming for compressed input: the remapped base topic + "/compressed".
        image_type, topic = ((CompressedImage, self.resolve_topic_name("image") + "/compressed")
                             if self._config.compressed else (Image, "image"))
        self._stats.publishers_reset()  # a new subscription: frames sent while inactive were never offered
        image_sub = self.create_subscription(image_type, topic, self._on_image, sensor_qos(),
                                             qos_overriding_options=overridable(),
                                             callback_group=FrameGate(self._buffer.wants_frame))
        targets_sub = self.create_subscription(TargetArray, "targets", self._on_targets, OUTPUT_QOS)
        self._inputs += [image_sub, targets_sub]
        self._active = True
        for sub in self._inputs[:-1]:  # the camera inputs
            qos = sub.qos_profile
            what = "tracking" if sub is image_sub else "3D from"
            self.get_logger().info(f"active: {what} {sub.topic_name} ({qos.reliability.name.lower()}, "
                                   f"{qos.history.name.lower()} {qos.depth})")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []
        self._buffer.clear()
        if self._depth_ring is not None:
            with self._depth_lock:
                self._depth_ring.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        self._release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return SUCCESS

    def _release(self) -> None:
        self._stop_worker()
        if self.session is None:
            return
        for pub in self._output_pubs():
            self.destroy_lifecycle_publisher(pub)
        self.destroy_publisher(self._diag_pub)
        self.destroy_timer(self._diag_timer)
        for srv in self._service_handles:
            self.destroy_service(srv)
        self.session = None  # the worker has stopped: nothing steps it any more

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._stop.set()
            self._buffer.wake()
            self._compute.shutdown()  # waits for the frame loop to end
            self._worker = self._compute = None

    def start(self) -> bool:
        """configure + activate (the executable's autostart); False if either fails."""
        return self.trigger_configure() == SUCCESS and self.trigger_activate() == SUCCESS

    def close(self) -> None:
        self._stop_worker()
        self.destroy_node()

    # -- inputs (executor thread) ----------------------------------------------------------------
    def _wake_executor(self) -> None:
        """The worker waits for a frame (``FrameGate``): the executor rebuilds its wait set with the image
        subscription in it."""
        executor = self.executor
        try:
            if executor is not None:
                executor.wake()
        except InvalidHandle:  # the executor is shutting down
            pass

    @_guarded("images")
    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        self._stats.image_in(info)
        stamp = _stamp_ns(msg.header.stamp)
        limit = self._config.max_image_pixels
        try:  # header checks only: the worker decodes the one frame it takes
            jumped_back = convert.check_stamp(stamp, self._last_stamp)
            shape = (convert.compressed_shape(msg, limit) if self._config.compressed
                     else convert.image_shape(msg, max_pixels=limit))
            tracked = self.session.size
            if self.session.admit(shape):
                self.get_logger().warning(
                    f"resolution changes from {tracked[1]}x{tracked[0]} to {shape[1]}x{shape[0]} "
                    f"({self.session.resolution_change_frames} frames in a row): tracking restarts on the new size",
                    throttle_duration_sec=REPEAT_LOG_PERIOD_S)
        except Rejection as exc:
            self._reject(exc, "images", "rejected image: ", throttle=True)
            return
        if jumped_back:
            self._stats.stamp_jumps_back += 1
            self.get_logger().warning(
                f"image stamp jumped back from {self._last_stamp * 1e-9:.9f} to {stamp * 1e-9:.9f} (restarted clock: "
                "bag loop, simulation reset?): accepted, stamp order restarts here",
                throttle_duration_sec=REPEAT_LOG_PERIOD_S)
        if stamp:
            self._last_stamp = stamp
        self._buffer.push(stamp, msg.header, msg, shape)

    @_guarded("depth")
    def _on_depth(self, msg: Image) -> None:
        """Header checks only (the size is checked against the colour frame it pairs with); then held."""
        self._stats.depth_in()
        try:
            convert.check_depth_encoding(msg)
        except Rejection as exc:
            self._reject(exc, "depth", "rejected depth: ", throttle=True)
            return
        with self._depth_lock:
            self._depth_ring.add(_stamp_ns(msg.header.stamp), msg)

    @_guarded("camera_info")
    def _on_camera_info(self, msg: CameraInfo) -> None:
        """The latest valid intrinsics win; a bad CameraInfo is rejected and the previous ones are kept."""
        size = self.session.size or (msg.height, msg.width)  # before the first frame: its size is unknown
        try:
            self._intrinsics = convert.camera_info_to_intrinsics(msg, size)
        except Rejection as exc:
            self._reject(exc, "camera_info", "rejected camera_info: ", throttle=True)

    @_guarded("targets")
    def _on_targets(self, msg: TargetArray) -> None:
        self._queue_targets(msg)

    def _queue_targets(self, msg: TargetArray) -> tuple[list[int], list[str]]:
        """Check and queue a TargetArray; returns the accepted ids and one line per rejected target. What can
        be known now is checked now (ids, boxes, masks, the frame's size where it is held, max_objects)."""
        if len(msg.targets) > convert.MAX_REQUEST_ITEMS:
            exc = convert.InputError("too_many_items", f"{len(msg.targets)} targets in one message, over the limit "
                                                       f"of {convert.MAX_REQUEST_ITEMS}: none taken")
            self._reject(exc, "targets", "rejected targets: ")
            return [], [str(exc)]
        max_id = 255 if self._config.label_encoding == "mono8" else convert.MAX_ID
        targets, errors = convert.targets_from_msg(msg, max_id)
        stamp = _stamp_ns(msg.header.stamp)
        # A held frame's size is known now; zero-stamped targets start on the next frame processed, whose
        # size only that frame knows: they get the checks that need no size now, the rest when they start.
        shape = self._buffer.shape_for(stamp) if stamp else None
        fits, refused = self.session.check_targets(targets, shape, self._buffer.waiting_ids())
        errors += refused
        self._reject_all(errors, "targets", "rejected ")
        if fits:
            where = self._buffer.add_targets(stamp, fits)
            self.get_logger().info(f"targets {convert.id_ranges(t.obj_id for t in fits)} "
                                   f"(stamp {stamp * 1e-9:.9f}) start on {where}")
        return [t.obj_id for t in fits], [str(e) for e in errors]

    @_guarded("requests")
    def _on_add_targets(self, request: AddTargets.Request, response: AddTargets.Response) -> AddTargets.Response:
        if not self._active:
            response.success, response.message = False, "node is not active"
            return response
        response.accepted_ids, response.rejections = self._queue_targets(request.targets)
        response.success = not response.rejections
        response.message = (f"accepted {len(response.accepted_ids)}, rejected {len(response.rejections)}")
        return response

    @_guarded("requests")
    def _on_remove_targets(self, request: RemoveTargets.Request,
                           response: RemoveTargets.Response) -> RemoveTargets.Response:
        if len(request.ids) > convert.MAX_REQUEST_ITEMS:
            exc = convert.InputError("too_many_items", f"{len(request.ids)} ids in one request, over the limit of "
                                                       f"{convert.MAX_REQUEST_ITEMS}: nothing removed")
            self._reject(exc, "requests", "rejected remove: ")
            response.success, response.message = False, str(exc)
            return response
        waiting = self._buffer.discard_targets(request.ids)
        had = self.session.remove(request.ids)
        removed, unknown = convert.split_remove(request.ids, waiting | set(had))
        if unknown:
            self._reject_all([convert.InputError("unknown_id", f"{len(unknown)} unknown id{'s' * (len(unknown) > 1)}: "
                                                 f"{convert.id_ranges(unknown)}")], "requests", "rejected remove: ")
        response.removed_ids, response.unknown_ids = removed, unknown
        response.success = not unknown
        response.message = f"removed {len(removed)}, unknown {len(unknown)}"
        return response

    @_guarded("requests")
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._buffer.clear(frames=False)
        dropped = self.session.reset()
        self._last_stamp = None  # a reset stream may replay earlier stamps (the same bag again)
        response.success, response.message = True, f"tracker reset: {dropped} objects dropped"
        self.get_logger().info(response.message)
        return response

    def _reject(self, exc: Rejection, kind: str, prefix: str, throttle: bool = False,
                late: bool = False) -> None:
        """Count a rejected input (of ``kind``, diagnostics.KINDS) and log it. Throttled (images: a broken
        camera must not flood the log), a reason repeating within REPEAT_LOG_PERIOD_S is only counted."""
        self._stats.reject(exc.reason, kind, late)
        if throttle:
            self._log_throttled(f"{kind}.{exc.reason}", f"{prefix}{exc}")
        else:
            self.get_logger().warning(f"{prefix}{exc}")

    def _log_throttled(self, key: str, text: str, error: bool = False) -> None:
        """Log ``text`` (a warning, or an ``error``) unless a line of the same ``key`` was logged within
        REPEAT_LOG_PERIOD_S."""
        now = time.monotonic()
        if now - self._last_logged.get(key, -REPEAT_LOG_PERIOD_S) < REPEAT_LOG_PERIOD_S:
            return
        self._last_logged[key] = now
        logger = self.get_logger()
        (logger.error if error else logger.warning)(text)

    def _reject_all(self, errors: list[Rejection], kind: str, prefix: str) -> None:
        """Count every rejection of one message; log one line per reason (its first item and how many more)."""
        by_reason: dict[str, list[Rejection]] = {}
        for exc in errors:
            by_reason.setdefault(exc.reason, []).append(exc)
        for reason, items in by_reason.items():
            for exc in items[1:]:
                self._stats.reject(reason, kind)
            more = f" (and {len(items) - 1} more: {reason})" if len(items) > 1 else ""
            self._reject(Rejection(reason, f"{items[0]}{more}"), kind, prefix)

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            job = self._buffer.take(timeout=0.2)
            if job is None or self._stop.is_set():
                continue
            try:
                self._process(job)
            except Exception as exc:
                if not self.context.ok():  # SIGINT/SIGTERM shut the context down mid-frame: main() cleans up
                    return
                # Not the tracker (it reports its own faults): log, and keep the node alive for the next frame.
                self.get_logger().error(f"frame {job.frame.seq} failed outside the tracker: {type(exc).__name__}: "
                                        f"{exc}", throttle_duration_sec=5.0)

    def _process(self, job: Job) -> None:
        start = time.perf_counter()
        try:
            rgb = self._decode(job.frame.pixels)
            depth = self._paired_depth(job.frame.stamp_ns, rgb.shape[:2]) if self._depth_ring is not None else None
            outcome = self.session.step(rgb, job.targets, depth)
        except Rejection as exc:  # counted as a rejected image; its targets wait for the next frame
            self._reject(exc, "images", "rejected image: ", throttle=True, late=True)
            self._buffer.requeue(job.targets)
            return
        self._report(outcome)
        try:
            self._publish(outcome.result, rgb, job.frame.header)
        finally:  # counted even if publishing fails: received = processed + dropped + waiting must hold
            self._stats.frame_done(outcome.result, time.perf_counter() - start)

    def _paired_depth(self, stamp: int, shape: tuple[int, int]) -> tuple[np.ndarray, Intrinsics] | None:
        """The decoded depth of the frame stamped ``stamp`` and the intrinsics, or None (counted, logged)."""
        tolerance = self._settings.depth.pairing_tolerance_s
        with self._depth_lock:
            msg = self._depth_ring.pair(stamp, tolerance)
        intrinsics = self._intrinsics
        if msg is None or intrinsics is None:
            outcome, why = (("unpaired", f"no depth frame within {tolerance} s of its stamp") if msg is None else
                            ("no_camera_info", "no valid camera_info received yet"))
            self._stats.depth_frame(outcome)
            self._log_throttled(f"depth.{outcome}", f"no 3D for the frame stamped {stamp * 1e-9:.9f}: {why} "
                                                    f"(depth_{outcome})")
            return None
        try:
            metres = convert.depth_to_array(msg, shape)
        except Rejection as exc:
            self._reject(exc, "depth", "rejected depth: ", throttle=True)
            return None
        self._stats.depth_frame("paired")
        return metres, intrinsics

    def _on_repaired(self, warning: str) -> None:
        """A JPEG that libjpeg-turbo repaired: processed, counted apart, its warning in the ROS log."""
        self._stats.corrupt_repaired += 1
        self.get_logger().warning(f"image decoded with repairs (corrupt_repaired): {warning}",
                                  throttle_duration_sec=REPEAT_LOG_PERIOD_S)

    def _report(self, outcome: Outcome) -> None:
        """Log and count what the session did besides tracking: resets, fault recovery, refused targets."""
        log, result = self.get_logger(), outcome.result
        if outcome.resized:
            (h0, w0), (h1, w1) = outcome.resized
            self._stats.resolution_resets += 1
            log.warning(f"resolution changed from {w0}x{h0} to {w1}x{h1}: tracking reset, objects "
                        f"{convert.id_ranges(outcome.dropped)} dropped; send new targets",
                        throttle_duration_sec=REPEAT_LOG_PERIOD_S)
        if outcome.restarting is not None:
            self._stats.fault_resets += 1
            log.error(f"{self._settings.tracker.fault_limit} consecutive tracker faults (last: {result.status}): "
                      f"tracker reset; restarting objects {outcome.restarting} from their last good masks on the "
                      "next frame")
        elif not result.ok:
            log.warning(f"tracker fault on frame {result.frame_index}: {result.status}", throttle_duration_sec=5.0)
        self._reject_all(outcome.rejected, "targets", "rejected ")

    def _publish(self, result, rgb, header) -> None:
        self._tracks_pub.publish(convert.result_to_msg(result, header))
        if self._positions_pub is not None:
            self._positions_pub.publish(convert.positions_msg(result, header))
        if self._label_pub.get_subscription_count() > 0:
            labels = convert.label_array(result, rgb.shape[:2], self._config.label_encoding)
            self._label_pub.publish(convert.array_to_image(labels, self._config.label_encoding, header))
        if self._overlay_pub.get_subscription_count() > 0:
            self._overlay_pub.publish(convert.array_to_image(draw_overlay(rgb, result, self._config.overlay),
                                                             "bgr8", header))

    def _output_pubs(self) -> list:
        return [p for p in (self._tracks_pub, self._label_pub, self._overlay_pub, self._positions_pub) if p is not None]

    @_guarded("timers")
    def _publish_diagnostics(self) -> None:
        state = "active" if self._active else "inactive"
        matched = {pub.topic_name: pub.get_subscription_count() for pub in self._output_pubs()}
        status = self._stats.status(f"{self.get_name()}: tracking", self._backend_name, self._device, state,
                                    self._buffer.received, self._buffer.dropped, self._depth_ring is not None,
                                    matched)
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def main(args: list[str] | None = None) -> int:
    transport.apply()  # before rclpy.init: camera frames need the larger shared-memory segment
    rclpy.init(args=args)
    node, rc = None, 0
    try:
        node = TrackerNode()
        # One executor thread: rclpy's MultiThreadedExecutor polls while a callback runs, and that spin took
        # the worker's CPU (1-2 fps instead of the tracker's ~90 on 96x128 frames, measured with the soak tool).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.get_parameter("autostart").value and not node.start():
            node.get_logger().error("autostart failed: the node did not reach the active state")
            rc = 1
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's signal handler shuts the context down from another thread; an executor building its wait
        # set at that moment raises RCLError (a RuntimeError) instead of ExternalShutdownException (seen in
        # the node tests: SIGINT, rc 1). With the context down it is the same shutdown.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
