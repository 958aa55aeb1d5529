"""Harder, varied sequences for the CPU backend, with training and fresh seeds held apart.

Built from the same real-photo sprites and backgrounds as ``sequences.py`` (imported, not copied), but each
seed draws its own: which photos, whether a sprite keeps its own texture or is re-textured from another
photo, the background crop, paths, speeds and sizes. On top of that every kind varies what breaks
trackers: untracked look-alikes (the target's exact texture) crossing in front of and behind a target,
scale 0.25x-4x with rotation, fast motion with motion blur, lighting changes, camera shake, partial and
full occlusion, leaving the view, objects touching.

Ground truth is exact for what is rendered: a layer covers a pixel where its (time-averaged, when blurred)
alpha exceeds 0.5, and a target's mask is what it covers minus what the layers in front of it cover.
Lighting and shake change the image, never the masks' definition. ``frame(i)`` is a pure function of the
seed and ``i``.

Tune on ``TRAIN_SEEDS`` only; ``FRESH_SEEDS`` are for reporting (``benchmark_cpu --split fresh``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import skimage.data

from .sequences import (Sprite, _backgrounds, _coin_sprites, _object_sprites, _occluder_sprite, _polygon, _rgb,
                        first_frame_targets)
from .types import Target

SCENE_KINDS: tuple[str, ...] = ("lookalike", "scale_rotation", "occlusion", "exit_reentry", "fast_motion",
                                "touching", "many_objects")
TRAIN_SEEDS: tuple[int, ...] = (0, 1, 2)
FRESH_SEEDS: tuple[int, ...] = (1000, 1001, 1002)  # report only: nothing is tuned on these
SPLITS: dict[str, tuple[int, ...]] = {"train": TRAIN_SEEDS, "fresh": FRESH_SEEDS}
DEFAULT_FRAMES = dict(lookalike=120, scale_rotation=120, occlusion=140, exit_reentry=140, fast_motion=100,
                      touching=100, many_objects=100)

Pose = tuple[float, float, float, float]  # centre x, centre y, height (pixels), angle (degrees); of time t


@dataclass
class Layer:
    sprite: Sprite
    pose: Callable[[float], Pose]         # t may be fractional (motion blur samples between frames)
    obj_id: int | None = None             # None: scenery (occluder, look-alike), not a target
    depth: Callable[[int], float] = lambda i: 0.0  # larger = nearer the camera; ties keep list order
    blur: float = 0.0                     # exposure in frames: the layer is averaged over [t - b/2, t + b/2]


@functools.lru_cache(maxsize=1)
def _texture_photos() -> tuple[np.ndarray, ...]:
    return tuple(_rgb(p) for p in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
                                   skimage.data.rocket(), skimage.data.brick(), skimage.data.gravel(),
                                   skimage.data.immunohistochemistry(), skimage.data.hubble_deep_field()))


def _retextured(sprite: Sprite, rng: np.random.Generator) -> Sprite:
    """``sprite``'s outline filled with a random crop of another photo (random texture, real outline)."""
    photos = _texture_photos()
    photo = photos[rng.integers(len(photos))]
    h, w = sprite.alpha.shape
    s = max(h / photo.shape[0], w / photo.shape[1], rng.uniform(0.5, 1.0))
    photo = cv2.resize(photo, None, fx=s * 1.01, fy=s * 1.01, interpolation=cv2.INTER_AREA)
    y, x = rng.integers(photo.shape[0] - h + 1), rng.integers(photo.shape[1] - w + 1)
    return Sprite(f"{sprite.name}_tex", np.ascontiguousarray(photo[y:y + h, x:x + w]), sprite.alpha)


def _random_polygon(rng: np.random.Generator) -> Sprite:
    photos = _texture_photos()
    k = int(rng.integers(len(photos)))
    ph, pw = photos[k].shape[:2]
    r = 0.3 * min(ph, pw)
    centre = (int(rng.uniform(r, pw - r)), int(rng.uniform(r, ph - r)))
    return _polygon(f"poly{k}", photos[k], centre, r, seed=int(rng.integers(1 << 30)))


def _random_sprites(rng: np.random.Generator, n: int, small: bool = False) -> list[Sprite]:
    """``n`` distinct-looking sprites: photo cut-outs, re-textured cut-outs and textured polygons."""
    pool = list(_coin_sprites() if small else _object_sprites())
    order = rng.permutation(len(pool))
    out = []
    for k in range(n):
        choice = rng.uniform()
        base = pool[order[k % len(pool)]]
        if choice < 0.4 and not (small and k < len(pool)):
            out.append(_retextured(base, rng))
        elif choice < 0.6:
            out.append(_random_polygon(rng))
        else:
            out.append(base)
    return out


def _warp(sprite: Sprite, pose: Pose, shape: tuple[int, int]):
    """(y0, y1, x0, x1), rgb float32, alpha float32 of ``sprite`` at ``pose``, clipped to ``shape``; None
    when it is outside."""
    cx, cy, height, angle = pose
    sh, sw = sprite.alpha.shape
    m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, height / sh)
    m[:, 2] += (cx - sw / 2, cy - sh / 2)
    corners = np.array([[0, 0, 1], [sw, 0, 1], [0, sh, 1], [sw, sh, 1]], float) @ m.T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), (shape[1], shape[0]))
    if x1 <= x0 or y1 <= y0:
        return None
    m[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    rgb = cv2.warpAffine(sprite.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(sprite.alpha, m, size, flags=cv2.INTER_LINEAR)
    return (int(y0), int(y1), int(x0), int(x1)), rgb.astype(np.float32), alpha


_BLUR_SAMPLES = 5


class Scene:
    """Frames rendered on demand over a panned, shaken, re-lit background."""

    def __init__(self, name: str, size: tuple[int, int], n_frames: int, background: np.ndarray,
                 layers: list[Layer], pan: Callable[[int], tuple[float, float]] = lambda i: (0.5, 0.5),
                 shake: float = 0.0, light: Callable[[int], np.ndarray] | None = None, seed: int = 0):
        self.name, self.size, self._n = name, size, n_frames
        h, w = size
        s = 1.2 * max(h / background.shape[0], w / background.shape[1])  # room to pan and shake
        self._background = cv2.resize(_rgb(background), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        self.layers, self._pan, self._shake, self._light, self._seed = layers, pan, shake, light, seed
        self.object_ids = [la.obj_id for la in layers if la.obj_id is not None]

    def __len__(self) -> int:
        return self._n

    def _camera(self, i: int) -> tuple[float, float]:
        """Shake offset (pixels) on frame ``i``: a pure function of the seed and ``i``."""
        if not self._shake:
            return 0.0, 0.0
        dx, dy = np.random.default_rng((self._seed, 7919, i)).normal(0.0, self._shake, 2)
        return float(dx), float(dy)

    def _render_layer(self, layer: Layer, i: int, offset: tuple[float, float]):
        """(box, premultiplied rgb, alpha) of ``layer`` on frame ``i``, averaged over its exposure."""
        h, w = self.size
        times = [i] if layer.blur <= 0 else list(i + layer.blur * np.linspace(-0.5, 0.5, _BLUR_SAMPLES))
        parts = []
        for t in times:
            cx, cy, height, angle = layer.pose(t)
            part = _warp(layer.sprite, (cx + offset[0], cy + offset[1], height, angle), (h, w))
            if part is not None:
                parts.append(part)
        if not parts:
            return None
        y0, x0 = min(p[0][0] for p in parts), min(p[0][2] for p in parts)
        y1, x1 = max(p[0][1] for p in parts), max(p[0][3] for p in parts)
        rgb = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
        for (py0, py1, px0, px1), prgb, palpha in parts:
            alpha[py0 - y0:py1 - y0, px0 - x0:px1 - x0] += palpha
            rgb[py0 - y0:py1 - y0, px0 - x0:px1 - x0] += prgb * palpha[..., None]
        return (y0, y1, x0, x1), rgb / len(times), alpha / len(times)

    def frame(self, i: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} of a {self._n}-frame scene")
        h, w = self.size
        bh, bw = self._background.shape[:2]
        dx, dy = self._camera(i)
        fx, fy = self._pan(i)
        x0 = int(np.clip(round(fx * (bw - w) - dx), 0, bw - w))
        y0 = int(np.clip(round(fy * (bh - h) - dy), 0, bh - h))
        image = self._background[y0:y0 + h, x0:x0 + w].astype(np.float32)
        order = sorted(range(len(self.layers)), key=lambda k: self.layers[k].depth(i))  # stable: back to front
        covers = []
        for k in order:
            rendered = self._render_layer(self.layers[k], i, (dx, dy))
            cover = np.zeros((h, w), bool)
            if rendered is not None:
                (ly0, ly1, lx0, lx1), rgb, alpha = rendered
                roi = image[ly0:ly1, lx0:lx1]
                roi[:] = roi * (1 - alpha[..., None]) + rgb
                cover[ly0:ly1, lx0:lx1] = alpha > 0.5
            covers.append(cover)
        if self._light is not None:
            image = image @ self._light(i).T
        masks, front = {}, np.zeros((h, w), bool)
        for k, cover in zip(reversed(order), reversed(covers)):  # front to back
            if self.layers[k].obj_id is not None:
                masks[self.layers[k].obj_id] = cover & ~front
            front |= cover
        return np.clip(image, 0, 255).astype(np.uint8), {oid: masks[oid] for oid in self.object_ids}

    def targets(self) -> list[Target]:
        return first_frame_targets(self.name, self.frame(0)[1],
                                   {la.obj_id: la.sprite.name for la in self.layers if la.obj_id is not None})


# -- motion -----------------------------------------------------------------------------------------
def _triangle(x, span: float):
    """``x`` folded into [0, span] (a bounce between two walls)."""
    r = np.mod(x, 2 * span)
    return np.where(r > span, 2 * span - r, r)


def _bounce(x0: float, y0: float, vx: float, vy: float, box: tuple[float, float, float, float],
            height: Callable[[float], float], spin: float = 0.0, angle0: float = 0.0) -> Callable[[float], Pose]:
    """Straight lines at constant speed, reflected by the walls of ``box`` = (x_lo, y_lo, x_hi, y_hi)."""
    lx, ly, hx, hy = box

    def pose(t: float) -> Pose:
        return (lx + float(_triangle(x0 - lx + vx * t, hx - lx)), ly + float(_triangle(y0 - ly + vy * t, hy - ly)),
                height(t), angle0 + spin * t)
    return pose


def _wander(cx: float, cy: float, ax: float, ay: float, period: float, phase: float,
            height: Callable[[float], float], spin: float = 0.0) -> Callable[[float], Pose]:
    def pose(t: float) -> Pose:
        a = 2 * np.pi * t / period + phase
        return cx + ax * np.sin(a), cy + ay * np.sin(2 * a + phase), height(t), spin * t
    return pose


def _path(times: list[float], xs: list[float], ys: list[float], height: Callable[[float], float],
          spin: float = 0.0) -> Callable[[float], Pose]:
    return lambda t: (float(np.interp(t, times, xs)), float(np.interp(t, times, ys)), height(t), spin * t)


def _const(v: float) -> Callable[[float], float]:
    return lambda t: v


def _lighting(rng: np.random.Generator, n: int, strength: float) -> Callable[[int], np.ndarray]:
    """Per-frame colour matrix: a slow gain swing, a colour cast and (``strength`` > 0.5) sudden steps."""
    period, phase = rng.uniform(0.6, 1.5) * n, rng.uniform(0, 2 * np.pi)
    cast = 1 + strength * 0.15 * rng.uniform(-1, 1, 3)
    steps = np.sort(rng.uniform(0, n, 2)) if strength > 0.5 else np.array([])
    step_gain = rng.uniform(0.75, 1.25, steps.size)

    def light(i: int) -> np.ndarray:
        gain = 1 + strength * 0.3 * np.sin(2 * np.pi * i / period + phase)
        gain *= np.prod(step_gain[steps <= i]) if steps.size else 1.0
        return np.diag(gain * cast)
    return light


# -- the kinds --------------------------------------------------------------------------------------
def make_scene(kind: str, seed: int, n_frames: int | None = None, size: tuple[int, int] = (480, 640)) -> Scene:
    """One of SCENE_KINDS at ``size`` = (height, width), drawn from ``seed``; object ids are 1..n."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; one of {', '.join(SCENE_KINDS)}")
    n = n_frames or DEFAULT_FRAMES[kind]
    rng = np.random.default_rng((seed, SCENE_KINDS.index(kind)))
    h, w = size
    u = h / 480  # speeds and sizes are for 480 rows
    backgrounds = _backgrounds() + _texture_photos()[:4]
    background = backgrounds[rng.integers(len(backgrounds))]
    if rng.uniform() < 0.5:
        background = background[:, ::-1]
    pan_period, pan_phase = rng.uniform(300, 700), rng.uniform(0, 2 * np.pi)

    def pan(i: int) -> tuple[float, float]:
        a = 2 * np.pi * i / pan_period + pan_phase
        return 0.5 + 0.5 * np.sin(a), 0.5 + 0.5 * np.sin(0.7 * a)

    shake, light, layers = 0.0, _lighting(rng, n, 0.3), []
    if kind == "lookalike":
        # target 1 drifts; its exact twin (not a target) crosses it in front, turns, and crosses back behind
        sp1, sp2 = _random_sprites(rng, 2)
        hgt = rng.uniform(0.22, 0.3) * h
        x1, y1 = rng.uniform(0.4, 0.6) * w, rng.uniform(0.35, 0.6) * h
        target = _wander(x1, y1, 0.06 * w, 0.04 * h, rng.uniform(150, 250), rng.uniform(0, 2 * np.pi), _const(hgt))
        side = rng.choice([-1.0, 1.0])
        off = side * (0.25 * w + 0.6 * hgt)  # the twin starts beside the target, in view
        dy = rng.uniform(-0.15, 0.15) * hgt
        turn = rng.uniform(0.4, 0.5) * n
        rel = _path([0, turn, turn + 0.1 * n, n], [off, -off, -off, off], [dy] * 4, _const(hgt * rng.uniform(0.9, 1.1)))

        def twin(t):
            return target(t)[0] + rel(t)[0], target(t)[1] + rel(t)[1], rel(t)[2], 0.0
        layers = [Layer(sp1, target, 1),
                  Layer(sp1, twin, depth=lambda i: 1.0 if i < turn + 0.05 * n else -1.0),
                  Layer(sp2, _wander(x1 - side * 0.33 * w, rng.uniform(0.25, 0.75) * h, 0.05 * w, 0.05 * h,
                                     rng.uniform(150, 250), rng.uniform(0, 2 * np.pi), _const(0.8 * hgt)), 2)]
        if rng.uniform() < 0.5:  # a still look-alike of target 2 beside it, never a target
            x2, y2, h2, _ = layers[2].pose(0)
            below = 1.0 if y2 < 0.5 * h else -1.0  # towards the middle of the frame
            layers.append(Layer(sp2, lambda t: (x2, y2 + below * 1.1 * h2, h2, 30.0)))
    elif kind == "scale_rotation":
        k = int(rng.integers(1, 3))
        sprites = _random_sprites(rng, k)
        for j, sp in enumerate(sprites):
            grow = rng.uniform() < 0.5
            start = (rng.uniform(0.09, 0.12) if grow else rng.uniform(0.3, 0.38)) * h
            end = rng.uniform(3.0, 4.0) if grow else rng.uniform(0.25, 0.35)
            spin = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.5)
            cx = (j + 0.5) * w / k
            scale = (lambda s0, e: lambda t: s0 * e ** float(np.clip(t / max(n - 1, 1), 0, 1)))(start, end)
            layers.append(Layer(sp, _wander(cx, 0.5 * h, 0.05 * w, 0.05 * h, rng.uniform(150, 250),
                                            rng.uniform(0, 2 * np.pi), scale, spin), j + 1))
    elif kind in ("occlusion", "exit_reentry", "touching"):
        sprites = _random_sprites(rng, 3)
        hgt = rng.uniform(0.2, 0.27) * h
        xs = (np.array([0.2, 0.5, 0.8]) + rng.uniform(-0.04, 0.04, 3)) * w
        ys = rng.uniform(0.3, 0.7, 3) * h
        for j, sp in enumerate(sprites):
            layers.append(Layer(sp, _wander(xs[j], ys[j], 0.05 * w, 0.05 * h, rng.uniform(150, 300),
                                            rng.uniform(0, 2 * np.pi), _const(hgt),
                                            rng.uniform(-0.5, 0.5)), j + 1))
        if kind == "occlusion":
            # object 3 passes behind object 2 (70-100% hidden) and a slab sweeps across all of them
            p2 = layers[1].pose
            go, back = rng.uniform(0.15, 0.25) * n, rng.uniform(0.45, 0.55) * n
            layers[2] = Layer(sprites[2], _path([0, go, go + 0.12 * n, back, n],
                                                [xs[2], xs[2], p2(go + 0.12 * n)[0], p2(back)[0], xs[2]],
                                                [ys[2], ys[2], p2(go)[1] + rng.uniform(-0.15, 0.15) * hgt,
                                                 p2(back)[1], ys[2]], _const(0.85 * hgt)), 3,
                              depth=lambda i: -1.0)
            slab = _occluder_sprite() if rng.uniform() < 0.5 else _retextured(_occluder_sprite(), rng)
            speed = rng.uniform(5, 9) * u * rng.choice([-1.0, 1.0])
            start, slab_h = rng.uniform(0.55, 0.65) * n, float(rng.uniform(0.8, 1.0) * h)
            x_in = -0.3 * w if speed > 0 else 1.3 * w
            layers.append(Layer(slab, lambda t: (x_in + speed * (t - start), 0.5 * h, slab_h, 0.0),
                                depth=lambda i: 2.0))
        elif kind == "exit_reentry":
            # object 1 leaves through an edge, stays out 40-60 frames and comes back through another
            gone = rng.uniform(0.15, 0.25) * n
            back = gone + rng.uniform(40, 60)
            out = hgt
            side = rng.choice([-1.0, 1.0])
            layers[0] = Layer(sprites[0], _path([0, gone, gone + 1, back, back + 25, n],
                                                [xs[0], w / 2 + side * (w / 2 + out), w / 2 + side * (w / 2 + out),
                                                 w / 2 - side * (w / 2 + out), w / 2 - side * 0.25 * w,
                                                 w / 2 - side * 0.2 * w],
                                                [ys[0], ys[0], h - ys[0], h - ys[0], h - ys[0], h - ys[0]],
                                                _const(hgt)), 1)
        else:
            # objects 1 and 2 move together, touching; object 3 runs into them and back
            cx, cy = rng.uniform(0.35, 0.5) * w, rng.uniform(0.4, 0.6) * h
            gap = rng.uniform(0.55, 0.7) * hgt  # centres closer than a height: the outlines touch
            base = _wander(cx, cy, 0.08 * w, 0.05 * h, rng.uniform(150, 250), rng.uniform(0, 2 * np.pi), _const(hgt))
            ang = rng.uniform(0, np.pi)
            layers[0] = Layer(sprites[0], base, 1)
            layers[1] = Layer(sprites[1], lambda t: (base(t)[0] + gap * np.cos(ang), base(t)[1] + gap * np.sin(ang),
                                                     hgt, 0.0), 2)
            hit = rng.uniform(0.4, 0.6) * n
            layers[2] = Layer(sprites[2], _path([0, hit, n], [0.85 * w, cx + 0.9 * hgt, 0.85 * w],
                                                [ys[2], cy, ys[2]], _const(hgt)), 3)
    elif kind == "fast_motion":
        k = int(rng.integers(2, 4))
        sprites = _random_sprites(rng, k)
        shake, light = rng.uniform(2, 5) * u, _lighting(rng, n, 1.0)
        for j, sp in enumerate(sprites):
            hgt = rng.uniform(0.15, 0.22) * h
            speed = rng.uniform(8, 18) * u
            a = rng.uniform(0, 2 * np.pi)
            margin = 0.6 * hgt
            layers.append(Layer(sp, _bounce((j + 0.5) * w / k, rng.uniform(0.35, 0.65) * h, speed * np.cos(a),
                                            speed * np.sin(a), (margin, margin, w - margin, h - margin),
                                            _const(hgt), rng.uniform(-2, 2)), j + 1,
                                blur=rng.uniform(0.5, 1.0)))
    else:  # many_objects: 12 small objects bouncing, passing over each other
        sprites = _random_sprites(rng, 12, small=True)
        cols, rows = 4, 3
        for j, sp in enumerate(sprites):
            hgt = rng.uniform(0.07, 0.1) * h
            speed, a = rng.uniform(2, 6) * u, rng.uniform(0, 2 * np.pi)
            margin = 0.6 * hgt
            layers.append(Layer(sp, _bounce((j % cols + 0.5) * w / cols, (j // cols + 0.5) * h / rows,
                                            speed * np.cos(a), speed * np.sin(a),
                                            (margin, margin, w - margin, h - margin), _const(hgt),
                                            rng.uniform(-1, 1)), j + 1))
    return Scene(f"{kind}_s{seed}", size, n, background, layers, pan, shake, light, seed)
