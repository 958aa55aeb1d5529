"""Semi-synthetic test sequences: real-photo objects moving over real photo backgrounds, with exact
ground-truth masks.

Objects are cut from scikit-image's bundled photos with their real outlines (GrabCut segmentations of
the coffee cup, the astronaut's head and the space shuttle, thresholded coins, the logo's alpha) or as
irregular polygons cut from a real texture (the cat's face); backgrounds are other bundled photos,
panned. Frames are rendered on demand, so a 3000-frame sequence costs no memory, and everything is
deterministic given the seed.

Each sequence also renders an exact depth image (``rgbd``): a tilted background plane far away, every actor a
rounded surface at its own depth, nearer the higher its layer (so depth agrees with who covers whom), drifting
slowly; ``true_centroids`` are the back-projected means of that depth under the true visible masks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import skimage.data
from scipy import ndimage

from .depth import Intrinsics, mean_point
from .types import Target, mask_box

SEQUENCE_KINDS: tuple[str, ...] = ("translation", "scale_rotation", "occlusion", "exit_reentry", "distractor",
                                   "small_objects", "appearance_change", "long_loop")

_SPRITE_SIDE = 256  # sprites are stored with this longest side and scaled at render time
_HFOV_DEG = 60.0  # the synthetic camera's horizontal field of view
_BACKGROUND_M, _BACKGROUND_TILT_M = 5.0, 1.0  # plane depth at the centre row; top row this much farther
_NEAREST_M, _FARTHEST_M = 1.2, 3.5  # layer depths: the top actor nearest, the bottom one farthest


@dataclass(frozen=True)
class Sprite:
    name: str
    rgb: np.ndarray    # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]


# -- sprites: real outlines cut from real photos ----------------------------------------------------
def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _finish(name: str, rgb: np.ndarray, mask: np.ndarray) -> Sprite:
    """Crop to the largest component of ``mask``, fill its holes, scale to the stored size."""
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1)))))
    mask = ndimage.binary_fill_holes(mask)
    x0, y0, x1, y1 = mask_box(mask)
    rgb, alpha = rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.float32)
    s = _SPRITE_SIDE / max(rgb.shape[:2])
    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    alpha = cv2.resize(cv2.GaussianBlur(alpha, (3, 3), 0), size, interpolation=cv2.INTER_AREA)
    return Sprite(name, cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA), alpha)


def _grabcut(name: str, image: np.ndarray, rect: tuple[int, int, int, int]) -> Sprite:
    rgb = _rgb(image)
    gc = np.zeros(rgb.shape[:2], np.uint8)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: fixed for deterministic sprites
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), gc, rect, np.zeros((1, 65)), np.zeros((1, 65)), 5,
                cv2.GC_INIT_WITH_RECT)
    return _finish(name, rgb, (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD))


def _polygon(name: str, image: np.ndarray, center: tuple[int, int], radius: float, seed: int) -> Sprite:
    """An irregular star-shaped polygon cut from a real texture."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 11))
    radii = radius * rng.uniform(0.65, 1.0, angles.size)
    pts = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], 1)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return _finish(name, _rgb(image), mask.astype(bool))


@functools.lru_cache(maxsize=1)
def _object_sprites() -> tuple[Sprite, ...]:
    logo = skimage.data.logo()
    return (
        _grabcut("cup", skimage.data.coffee(), (60, 5, 430, 380)),
        _grabcut("astronaut_head", skimage.data.astronaut(), (140, 40, 170, 300)),
        _polygon("cat_face", skimage.data.chelsea(), (200, 160), 120, seed=3),
        _grabcut("shuttle", skimage.data.astronaut(), (370, 0, 90, 300)),
        _finish("logo", logo[..., :3], logo[..., 3] > 127),
        _grabcut("rocket", skimage.data.rocket(), (270, 110, 100, 310)),
    )


@functools.lru_cache(maxsize=1)
def _coin_sprites() -> tuple[Sprite, ...]:
    coins = skimage.data.coins()
    fg = ndimage.binary_opening(coins > 120, iterations=2)  # bright coins on a dark cloth
    labels, n = ndimage.label(ndimage.binary_fill_holes(fg))
    keep = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        fill = (labels[sl] == lab).mean()
        if bh * bw > 600 and 0.7 < bh / bw < 1.4 and fill > 0.6:  # round, whole coins only
            keep.append(lab)
    return tuple(_finish(f"coin{k}", _rgb(coins), labels == lab) for k, lab in enumerate(keep))


@functools.lru_cache(maxsize=1)
def _backgrounds() -> tuple[np.ndarray, ...]:
    return (skimage.data.hubble_deep_field(), skimage.data.immunohistochemistry(), skimage.data.retina(),
            _rgb(skimage.data.gravel()), skimage.data.rocket(), _rgb(skimage.data.brick()))


@functools.lru_cache(maxsize=1)
def _occluder_sprite() -> Sprite:
    """A wide irregular slab of real texture (the brick wall) used as an occluder."""
    brick = _rgb(skimage.data.brick())
    h, w = brick.shape[:2]
    pts = np.array([[0.1, 0.0], [0.9, 0.05], [1.0, 0.5], [0.85, 1.0], [0.05, 0.95], [0.0, 0.45]]) * [w * 0.45, h]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts + [w * 0.2, 0]).astype(np.int32)], 1)
    # tinted so it is a different material from the grey backgrounds
    return _finish("occluder", (brick * np.array([1.0, 0.8, 0.6])).astype(np.uint8), mask.astype(bool))


# -- actors and rendering ---------------------------------------------------------------------------
Pose = tuple[float, float, float, float]  # centre x, centre y (pixels), height (pixels), angle (degrees)


@dataclass
class _Actor:
    sprite: Sprite
    pose: Callable[[int], Pose]
    obj_id: int | None = None  # None: scenery (occluder, distractor), not a target
    tint: Callable[[int], np.ndarray] | None = None  # frame -> 3x3 colour matrix (appearance change)


@functools.lru_cache(maxsize=64)
def _bump(h: int, w: int) -> np.ndarray:
    """A paraboloid cap over an (h, w) sprite: 1 at its centre, 0 at its rim: a rounded surface's relief."""
    y, x = np.ogrid[:h, :w]
    return np.clip(1 - ((2 * x + 1) / w - 1) ** 2 - ((2 * y + 1) / h - 1) ** 2, 0, 1).astype(np.float32)


def _paste(frame: np.ndarray, actor: _Actor, i: int, depth: np.ndarray | None = None,
           z: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Composite ``actor`` onto ``frame`` in place; returns its coverage (alpha > 0.5). With ``depth``, also
    writes the actor's surface there: ``z`` = (depth at its rim, relief at its centre), metres."""
    h, w = frame.shape[:2]
    cx, cy, height, angle = actor.pose(i)
    sp = actor.sprite
    scale = height / sp.rgb.shape[0]
    m = cv2.getRotationMatrix2D((sp.rgb.shape[1] / 2, sp.rgb.shape[0] / 2), angle, scale)
    m[:, 2] += (cx - sp.rgb.shape[1] / 2, cy - sp.rgb.shape[0] / 2)
    corners = np.array([[0, 0, 1], [sp.rgb.shape[1], 0, 1], [0, sp.rgb.shape[0], 1],
                        [sp.rgb.shape[1], sp.rgb.shape[0], 1]], float) @ m.T
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    coverage = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return coverage
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    rgb = cv2.warpAffine(sp.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = cv2.warpAffine(sp.alpha, m, size, flags=cv2.INTER_LINEAR)[..., None]
    if actor.tint is not None:
        rgb = rgb @ actor.tint(i).T
    roi = frame[y0:y1, x0:x1]
    roi[:] = np.clip(roi * (1 - alpha) + rgb * alpha, 0, 255).astype(np.uint8)
    coverage[y0:y1, x0:x1] = alpha[..., 0] > 0.5
    if depth is not None:
        bump = cv2.warpAffine(_bump(*sp.alpha.shape), m, size, flags=cv2.INTER_LINEAR)
        cov = coverage[y0:y1, x0:x1]
        depth[y0:y1, x0:x1][cov] = z[0] - z[1] * bump[cov]
    return coverage


class Sequence:
    """Frames rendered on demand; ``frame(i)`` is a pure function of ``i``."""

    def __init__(self, name: str, size: tuple[int, int], n_frames: int, background: np.ndarray,
                 pan: Callable[[int], tuple[float, float]], actors: list[_Actor]):
        self.name, self.size, self._n = name, size, n_frames
        h, w = size
        s = 1.3 * max(h / background.shape[0], w / background.shape[1])  # room to pan
        self._background = cv2.resize(_rgb(background), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        self._pan = pan
        self._actors = actors  # bottom to top
        self.object_ids = [a.obj_id for a in actors if a.obj_id is not None]
        f = 0.5 * w / np.tan(np.deg2rad(_HFOV_DEG / 2))
        self.intrinsics = Intrinsics(f, f, (w - 1) / 2, (h - 1) / 2)
        self._layer_m = np.linspace(_FARTHEST_M, _NEAREST_M, len(actors)) if actors else np.zeros(0)
        self._spacing_m = (_FARTHEST_M - _NEAREST_M) / max(len(actors) - 1, 1)

    def __len__(self) -> int:
        return self._n

    def frame(self, i: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        image, masks, _ = self._render(i, with_depth=False)
        return image, masks

    def rgbd(self, i: int) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]:
        """``frame(i)`` (the same pixels) and its exact depth, float32 metres, valid everywhere."""
        image, masks, depth = self._render(i, with_depth=True)
        return image, masks, depth

    def true_centroids(self, depth: np.ndarray, masks: dict[int, np.ndarray]) -> dict[int, np.ndarray | None]:
        """Each object's 3D centroid (mean of its visible surface's points) from ``rgbd``; None when hidden."""
        return {oid: mean_point(depth, m, self.intrinsics) for oid, m in masks.items()}

    def _surface(self, k: int, i: int) -> tuple[float, float]:
        """(rim depth, relief) of layer ``k`` on frame ``i``: drift and relief stay within half a layer spacing, so
        layers never swap their order in depth."""
        drift = 0.25 * self._spacing_m * np.sin(2 * np.pi * i / (180 + 37 * k) + k)
        height_m = self._actors[k].pose(i)[2] * self._layer_m[k] / self.intrinsics.fy
        return float(self._layer_m[k] + drift), float(min(0.25 * height_m / 2, 0.25 * self._spacing_m))

    def _render(self, i: int, with_depth: bool):
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} of a {self._n}-frame sequence")
        h, w = self.size
        bh, bw = self._background.shape[:2]
        fx, fy = self._pan(i)  # pan position in [0, 1] of the spare room
        x0, y0 = int(round(fx * (bw - w))), int(round(fy * (bh - h)))
        image = self._background[y0:y0 + h, x0:x0 + w].copy()
        depth = None
        if with_depth:
            rows = np.arange(h, dtype=np.float32)[:, None]
            depth = np.repeat(_BACKGROUND_M + _BACKGROUND_TILT_M * (0.5 - rows / max(h - 1, 1)), w, axis=1)
        coverage = [_paste(image, a, i, depth, self._surface(k, i) if with_depth else (0.0, 0.0))
                    for k, a in enumerate(self._actors)]
        masks = {}
        nothing = [np.zeros((h, w), bool)]
        for k, actor in enumerate(self._actors):
            if actor.obj_id is not None:
                masks[actor.obj_id] = coverage[k] & ~np.logical_or.reduce(coverage[k + 1:] + nothing)
        return image, masks, depth

    def targets(self) -> list[Target]:
        return first_frame_targets(self.name, self.frame(0)[1],
                                   {a.obj_id: a.sprite.name for a in self._actors if a.obj_id is not None})


def first_frame_targets(name: str, masks: dict[int, np.ndarray], labels: dict[int, str]) -> list[Target]:
    """A sequence's targets: each object's frame-0 mask and its box (raises if one is not visible)."""
    out = []
    for oid, mask in masks.items():
        box = mask_box(mask)
        if box is None:
            raise ValueError(f"{name}: object {oid} is not visible on frame 0")
        out.append(Target(oid, labels[oid], tuple(float(v) for v in box), mask))
    return out


# -- the cases ------------------------------------------------------------------------------------
_DEFAULT_FRAMES = dict(translation=120, scale_rotation=120, occlusion=150, exit_reentry=160, distractor=120,
                       small_objects=100, appearance_change=600, long_loop=3000)


def _lissajous(cx: float, cy: float, ax: float, ay: float, period: float, phase: float,
               height: float, spin: float = 0.0) -> Callable[[int], Pose]:
    def pose(i: int) -> Pose:
        a = 2 * np.pi * i / period + phase
        return cx + ax * np.sin(a), cy + ay * np.sin(2 * a + phase), height, spin * i
    return pose


def _keyframes(times: list[float], xs: list[float], ys: list[float], height: float) -> Callable[[int], Pose]:
    return lambda i: (float(np.interp(i, times, xs)), float(np.interp(i, times, ys)), height, 0.0)


def _sweep(w: float, h: float, speed: float, start: float, period: float | None = None) -> Callable[[int], Pose]:
    """An occluder crossing the frame left to right at ``speed`` px/frame (again every ``period``)."""
    def pose(i: int) -> Pose:
        t = (i - start) % period if period else i - start
        return -0.3 * w + speed * t, 0.5 * h, 0.95 * h, 0.0
    return pose


def _hue_drift(n_frames: int, turn: float) -> Callable[[int], np.ndarray]:
    """Colour matrix rotating hue by up to ``turn`` degrees and dimming by 25% over the sequence."""
    def tint(i: int) -> np.ndarray:
        f = i / max(n_frames - 1, 1)
        a = np.deg2rad(turn * f)
        c, s, k = np.cos(a), np.sin(a), 1 / 3
        rot = np.array([[c + (1 - c) * k, k * (1 - c) - np.sqrt(k) * s, k * (1 - c) + np.sqrt(k) * s],
                        [k * (1 - c) + np.sqrt(k) * s, c + k * (1 - c), k * (1 - c) - np.sqrt(k) * s],
                        [k * (1 - c) - np.sqrt(k) * s, k * (1 - c) + np.sqrt(k) * s, c + k * (1 - c)]])
        return rot * (1 - 0.25 * f)
    return tint


def make_sequence(kind: str, n_frames: int | None = None, size: tuple[int, int] = (480, 640),
                  n_objects: int | None = None, seed: int = 0) -> Sequence:
    """One of SEQUENCE_KINDS at ``size`` = (height, width); object ids are 1..n_objects."""
    if kind not in SEQUENCE_KINDS:
        raise ValueError(f"unknown sequence kind {kind!r}; one of {', '.join(SEQUENCE_KINDS)}")
    n = n_frames or _DEFAULT_FRAMES[kind]
    n_obj = n_objects or (12 if kind == "small_objects" else 3)
    rng = np.random.default_rng(seed)
    h, w = size
    u = h / 480  # speeds and sizes below are for 480 rows; scale them with the frame
    backgrounds = _backgrounds()
    background = backgrounds[(seed + SEQUENCE_KINDS.index(kind)) % len(backgrounds)]
    pan_period = rng.uniform(400, 700)
    pan_phase = rng.uniform(0, 2 * np.pi)

    def pan(i: int) -> tuple[float, float]:
        a = 2 * np.pi * i / pan_period + pan_phase
        return 0.5 + 0.5 * np.sin(a), 0.5 + 0.5 * np.sin(0.7 * a)

    pool = _coin_sprites() if kind == "small_objects" else _object_sprites()
    sprites = [pool[(k + seed) % len(pool)] for k in range(n_obj)]
    # objects start in their own cells of a grid so that frame 0 shows each one whole
    cols = int(np.ceil(np.sqrt(n_obj * w / h)))
    rows = int(np.ceil(n_obj / cols))
    cells = [((c + 0.5) * w / cols, (r + 0.5) * h / rows) for r in range(rows) for c in range(cols)][:n_obj]
    cell = min(w / cols, h / rows)
    height = {"small_objects": 0.25 * cell, "scale_rotation": 0.22 * h}.get(kind, min(0.55 * cell, 0.3 * h))
    period = rng.uniform(250, 350, n_obj)
    phase = rng.uniform(0, 2 * np.pi, n_obj)
    amp = 0.25 * cell

    def wander(k: int, **kw) -> Callable[[int], Pose]:
        args = dict(cx=cells[k][0], cy=cells[k][1], ax=amp, ay=0.5 * amp, period=period[k], phase=phase[k],
                    height=height)
        return _lissajous(**(args | kw))

    actors = [_Actor(sp, wander(k), k + 1) for k, sp in enumerate(sprites)]
    occluder = _occluder_sprite()
    if kind == "translation":
        actors = [_Actor(sp, wander(k, ax=0.35 * cell, period=period[k] * 0.4), k + 1) for k, sp in enumerate(sprites)]
    elif kind == "scale_rotation":
        spin = rng.choice([-1.0, 1.0], n_obj) * rng.uniform(1.0, 2.0, n_obj)

        def grow(k: int) -> Callable[[int], Pose]:
            base = wander(k, ax=0.1 * cell, spin=spin[k])
            return lambda i: base(i)[:2] + (height * 0.5 * 4 ** (i / max(n - 1, 1)), base(i)[3])
        actors = [_Actor(sp, grow(k), k + 1) for k, sp in enumerate(sprites)]
    elif kind == "occlusion":
        actors.append(_Actor(occluder, _sweep(w, h, 6 * u, start=0)))
    elif kind == "exit_reentry":
        # object 1 leaves through the left edge, stays out for 60 frames, comes back through the right
        x0, y0 = cells[0]
        gone, back, out = 35, 85, height
        actors[0] = _Actor(sprites[0], _keyframes([0, gone, gone + 1, back, back + 25, max(n, back + 26)],
                                                  [x0, -out, w + out, w + out, 0.75 * w, 0.7 * w],
                                                  [y0, y0, h - y0, h - y0, h - y0, h - y0], height), 1)
    elif kind == "distractor":
        # a twin of object 1 (same photo, 5% brighter) crosses it, passing behind
        x0, y0 = cells[0]
        twin = _Actor(sprites[0], _keyframes([0, n], [w + 0.6 * height, -0.6 * height], [y0, y0 + 0.1 * h], height),
                      tint=lambda i: np.eye(3) * 1.05)
        actors[0] = _Actor(sprites[0], _keyframes([0, n], [x0, x0 + 0.15 * w], [y0, y0], height), 1)
        actors.insert(0, twin)
    elif kind == "appearance_change":
        for k, a in enumerate(actors):
            a.tint = _hue_drift(n, turn=120 * (1 if k % 2 else -1))
    elif kind == "long_loop":
        actors.append(_Actor(occluder, _sweep(w, h, 8 * u, start=rng.uniform(0, 100), period=250)))
    return Sequence(f"{kind}_s{seed}", size, n, background, pan, actors)
