"""The GPU pipeline: DeAOT (deaotpy) as the base model with its long-term memory run by SmartMemory,
SAM-HQ proposals and DINO verification (docs/method.md §2, §4.1).

How DeAOT's memory is taken over: ``AOTEngine.update_long_term_memory`` is the single point where a
frame enters long-term memory, and stock it prepends every memory frame forever. ``KeyedMemoryEngine``
overrides it to only keep the frame as the *candidate*; the tracker's ``write_memory(key)`` turns the
candidate into an entry, ``evict_memory(key)`` drops one, and the engine's ``long_term_memories`` is
re-assembled as the concatenation of its entries (long-term attention is order-free over tokens). So
memory holds the pinned reference frames + at most K frames for any video length.

Objects: each engine holds up to ``MODEL_MAX_OBJ_NUM`` (10) identities ("slots"); more objects open
further engines sharing the frame's encoder features, merged like ``AOTInferEngine`` does. An object
joins mid-stream the way aot's evaluator adds new ids: its engine re-runs ``add_reference_frame`` on the
frame with the merged label (existing objects' accepted masks + the new mask), which also becomes that
engine's pinned reference entry. That happens in ``accept``, once the frame's accepted masks are known.
A removed object's identity is erased from every entry (its pixels re-labelled background, ID_V re-fused
from the stored pre-fusion ID branch), so a later object can take the slot. That is exact for a one-layer
model (DeAOT-T); in deeper ones the ID branch entering layers >= 2 was computed with the identity present
and keeps that trace.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..box_init import ProposalBoxInit
from ..config import param
from ..device import PRECISIONS, Runtime, resolve_device
from ..dino import DINO_MODELS, DinoVerifier, IMAGENET_MEAN, IMAGENET_STD, build_dino
from ..refine import VerifiedRefiner
from ..samhq import SAM_MODELS, SamHQProposer, build_sam_hq
from ..tracker import HQSMemConfig, HQSMemTracker
from ..types import Prediction
from ..weights import FETCH_COMMAND, FETCH_MODULE, WeightsError, load_into, locate, missing, read_state_dict

DEAOT_MODELS = ("deaott", "deaots", "deaotb", "deaotl", "r50_deaotl", "swinb_deaotl")
EMBEDDINGS = ("dino", "backbone")


@dataclass(frozen=True)
class GpuPipelineConfig:
    weights_dir: str = param("", "Folder holding the checkpoints under their official names (empty: "
                             "$HQSMEM_WEIGHTS, else ~/.cache/hqsmem_ros/weights)")
    device: str = param("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    precision: str = param("fp16", "Autocast precision on GPU (the CPU always runs fp32)",
                           choices=tuple(PRECISIONS))
    model: str = param("deaott", "DeAOT variant (T/S/B/L with MobileNetV2, L with ResNet-50 or Swin-B)",
                       choices=DEAOT_MODELS)
    model_weights: str = param("", "DeAOT checkpoint path (empty: its official name in weights_dir)")
    max_short_edge: int = param(480, "DeAOT input: frames are scaled down to this short edge", min=64, max=2160)
    sam_hq: bool = param(True, "Load SAM-HQ + DINO and refine (steps 2-3); off: DeAOT + smart memory only")
    sam_model: str = param("vit_tiny", "SAM-HQ variant (vit_tiny = Light HQ-SAM)", choices=SAM_MODELS)
    sam_weights: str = param("", "SAM-HQ checkpoint path (empty: its official name in weights_dir)")
    dino_model: str = param(DINO_MODELS[0], "timm DINO / DINOv2 model of the verifier and the memory embedding",
                            choices=DINO_MODELS)
    dino_weights: str = param("", "DINO checkpoint path (empty: its official name in weights_dir)")
    dino_crop: int = param(224, "Side of the square crop DINO sees around each mask, in pixels", min=28, max=1022)
    dino_context: float = param(0.25, "Context around a mask's box in DINO's crop, as a fraction per side",
                                min=0.0, max=2.0)
    memory_embedding: str = param("dino", "Features pooled over each object's mask for memory relevance: dino, "
                                  "or backbone (DeAOT's encoder; needs no DINO when sam_hq is off)",
                                  choices=EMBEDDINGS)


# -- models -------------------------------------------------------------------------------------------
def deaot_config(name: str):
    from aot.configs.default import DefaultEngineConfig

    if name not in DEAOT_MODELS:
        raise ValueError(f"model must be one of {', '.join(DEAOT_MODELS)}, got {name!r}")
    return DefaultEngineConfig("hqsmem", name)


def _random_deaot(name: str) -> torch.nn.Module:
    from aot.networks.models import build_vos_model

    cfg = deaot_config(name)
    with contextlib.redirect_stdout(io.StringIO()):  # aot prints that its optional compiled op is absent
        return build_vos_model(cfg.MODEL_VOS, cfg)


def build_deaot(name: str, weights: Path | None) -> torch.nn.Module:
    """DeAOT variant ``name`` on the CPU with a model-zoo checkpoint (random when ``weights`` is None)."""
    model = _random_deaot(name)
    if weights is not None:
        load_into(model, read_state_dict(name, weights), name, weights,
                  variants={n: partial(_random_deaot, n) for n in DEAOT_MODELS})
    return model.eval().requires_grad_(False)


def deaot_input_size(h: int, w: int, max_short_edge: int, align_corners: bool) -> tuple[int, int]:
    """The evaluator's resize: short edge capped, then each side snapped to the stride (16k+1 when the
    model aligns corners, else 16k)."""
    scale = min(1.0, max_short_edge / min(h, w))

    def snap(n: float) -> int:
        if align_corners:
            return max(17, int(round((n - 1) / 16)) * 16 + 1)
        return max(16, int(round(n / 16)) * 16)

    return snap(h * scale), snap(w * scale)


# -- memory ---------------------------------------------------------------------------------------------
@dataclass
class MemoryEntry:
    layers: list[list]  # per LSTT layer: [K, V, None, ID_V], as the engine attends to them
    raw_id: list  # per layer: the ID branch before fusion with the label (None at layer 0)
    label: torch.Tensor  # (1, 1, h, w) uint8 accepted label map at the engine's input size

    def nbytes(self) -> int:
        tensors = [t for layer in self.layers for t in layer] + self.raw_id + [self.label]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _engine_class():
    # Built on first use: importing this module (factory does, for the config) must not need deaotpy.
    from aot.networks.engines.deaot_engine import DeAOTEngine
    from aot.utils.image import one_hot_mask

    class KeyedMemoryEngine(DeAOTEngine):
        """A DeAOT engine whose long-term memory is the concatenation of keyed entries."""

        def __init__(self, model: torch.nn.Module):
            # gap 0: every accepted frame is offered to the hook below; the backend decides what is kept.
            super().__init__(model, gpu_id=0, long_term_mem_gap=0)
            self.eval()
            self.entries: dict[int, MemoryEntry] = {}
            self.slots: dict[int, int] = {}  # identity slot (1..max_obj_num) -> object id
            self.candidate: list[list] | None = None  # the current frame's memory, not yet an entry
            self.raw_id: list | None = None
            self.label: torch.Tensor | None = None

        def update_long_term_memory(self, new_long_term_memories):
            self.candidate = [list(layer) for layer in new_long_term_memories]

        def update_short_term_memory(self, curr_mask, curr_id_emb=None, skip_long_term_update=False):
            self.raw_id = [layer[3] for layer in self.curr_lstt_output[1]]  # before the base fuses it in place
            self.label = curr_mask
            super().update_short_term_memory(curr_mask, curr_id_emb, skip_long_term_update)

        def add_reference_frame(self, img=None, mask=None, frame_step=-1, obj_nums=None, img_embs=None):
            super().add_reference_frame(img, mask, frame_step, obj_nums, img_embs)
            self.raw_id = [layer[3] for layer in self.curr_lstt_output[1]]
            self.label = mask
            self.candidate = [list(layer) for layer in self.curr_lstt_output[2]]
            self.assemble()  # the base assigned or prepended the frame itself

        def store(self, key: int) -> None:
            if self.candidate is None:
                raise RuntimeError("write_memory before accept on this frame")
            layers = [list(layer) for layer in self.candidate]  # own lists: forget_slot edits them per entry
            self.entries[key] = MemoryEntry(layers, list(self.raw_id), self.label.to(torch.uint8))
            self.assemble()

        def drop(self, key: int) -> None:
            if self.entries.pop(key, None) is not None:
                self.assemble()

        def forget_slot(self, slot: int) -> None:
            """Erase one identity from every entry: its pixels become background, ID_V is re-fused."""
            del self.slots[slot]
            for entry in self.entries.values():
                if not (entry.label == slot).any():
                    continue
                entry.label = entry.label.masked_fill(entry.label == slot, 0)
                id_emb = self.assign_identity(one_hot_mask(entry.label, self.max_obj_num))
                for layer, block, raw in zip(entry.layers, self.AOT.LSTT.layers, entry.raw_id):
                    layer[3] = block.fuse_key_value_id(None, raw, id_emb)[1]
            self.assemble()

        def assemble(self) -> None:
            if not self.entries:
                return
            entries = [self.entries[k] for k in sorted(self.entries)]
            self.long_term_memories = [
                [None if parts[0] is None else torch.cat(parts, dim=0) for parts in zip(*layer_entries)]
                for layer_entries in zip(*(e.layers for e in entries))]

        def memory_bytes(self) -> int:
            return sum(e.nbytes() for e in self.entries.values())

    return KeyedMemoryEngine


# -- the backend ------------------------------------------------------------------------------------------
class DeAOTBackend:
    """``Backend`` (backends/base.py) on DeAOT engines with keyed long-term memory."""

    name = "hqsmem"  # the user-facing name of the GPU pipeline this backend is the base of

    def __init__(self, model: torch.nn.Module, runtime: Runtime, max_short_edge: int = 480,
                 embedder: DinoVerifier | None = None):
        self.model = model.to(runtime.device)
        self.runtime = runtime
        self.device = str(runtime.device)
        self.max_short_edge = max_short_edge
        self.embedder = embedder  # None: memory embeddings from DeAOT's own encoder features
        self.engine_class = _engine_class()
        self.max_per_engine = model.max_obj_num
        self.engines: list = []
        self.where: dict[int, tuple[object, int]] = {}  # object id -> (engine, slot)
        self.joins: dict[object, int] = {}  # engine -> key of the reference frame it takes at accept
        self._frame: np.ndarray | None = None
        self._frame_id = -1
        self._image: torch.Tensor | None = None  # the frame as DeAOT's normalised input
        self._embs: list[torch.Tensor] | None = None  # its encoder features, shared by every engine
        self._mean = torch.tensor(IMAGENET_MEAN, device=runtime.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=runtime.device).view(1, 3, 1, 1) * 255

    # -- per-frame input ------------------------------------------------------------------------------
    def _prepare(self, frame: np.ndarray) -> None:
        image = self.runtime.upload(frame)
        if self.runtime.frame_id == self._frame_id:
            return
        h, w = frame.shape[:2]
        size = deaot_input_size(h, w, self.max_short_edge, self.model.cfg.MODEL_ALIGN_CORNERS)
        tracked = [tuple(e.input_size_2d) for e in self.engines if e.input_size_2d is not None]
        if tracked and tracked[0] != size:
            raise ValueError(f"frame size changed to {w}x{h} while objects are tracked at another size; "
                             "reset the tracker first")
        if size != (h, w):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        self._image = (image - self._mean) / self._std
        self._frame, self._frame_id, self._embs = frame, self.runtime.frame_id, None
        for engine in self.engines:
            engine.candidate = None

    def _features(self) -> list[torch.Tensor]:
        if self._embs is None:
            with self.runtime.autocast():
                self._embs = self.model.encode_image(self._image)
        return self._embs

    def _labels(self, masks: dict[int, np.ndarray]) -> dict[object, torch.Tensor]:
        """Per engine, the (1, 1, h, w) label map of the given masks at DeAOT's input size."""
        size = self._image.shape[-2:]
        labels = {e: torch.zeros((1, 1, *size), device=self.runtime.device) for e in self.engines}
        ids = [oid for oid in self.where if oid in masks and masks[oid].any()]
        if ids:
            small = F.interpolate(self.runtime.masks_to_device([masks[i] for i in ids])[:, None], size=size,
                                  mode="nearest")[:, 0] > 0.5
            for oid, m in sorted(zip(ids, small), key=lambda p: self.where[p[0]][1]):
                engine, slot = self.where[oid]
                labels[engine][0, 0][m] = slot
        return labels

    # -- Backend -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def add_object(self, obj_id: int, frame: np.ndarray, mask: np.ndarray, key: int) -> None:
        self._prepare(frame)
        if obj_id in self.where:
            self.remove_object(obj_id)
        engine = next((e for e in self.engines if len(e.slots) < self.max_per_engine), None)
        if engine is None:
            engine = self.engine_class(self.model)
            self.engines.append(engine)
        slot = min(set(range(1, self.max_per_engine + 1)) - set(engine.slots))
        engine.slots[slot] = obj_id
        self.where[obj_id] = (engine, slot)
        self.joins[engine] = key

    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        engine, slot = self.where.pop(obj_id)
        if len(engine.slots) == 1:
            self.engines.remove(engine)
            self.joins.pop(engine, None)
            return
        with self.runtime.autocast():
            engine.forget_slot(slot)

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> dict[int, Prediction]:
        self._prepare(frame)
        if not self.engines:
            return {}
        size = frame.shape[:2]
        probs = []
        with self.runtime.autocast():
            for engine in self.engines:
                engine.match_propogate_one_frame(self._image, img_embs=self._embs)
                self._embs = engine.curr_enc_embs
                logits = engine.decode_current_logits(size).float()
                free = [s for s in range(1, self.max_per_engine + 1) if s not in engine.slots]
                logits[:, free] = -1e4  # removed identities may linger in short-term memory for a frame
                probs.append(torch.softmax(logits, dim=1))
        # Several engines: background = product of their background probabilities (AOTInferEngine's soft
        # aggregation), objects = each engine's own channels.
        background = torch.stack([p[:, 0] for p in probs]).prod(0)
        merged = torch.cat([background[:, None]] + [p[:, 1:] for p in probs], dim=1)[0]
        label = merged.argmax(0)
        channel = {oid: 1 + self.engines.index(e) * self.max_per_engine + s - 1 for oid, (e, s) in self.where.items()}
        ids = list(channel)
        index = torch.tensor([channel[i] for i in ids], device=label.device)
        masks = label[None] == index[:, None, None]
        area = masks.sum((1, 2))
        confidence = (merged[index] * masks).sum((1, 2)) / area.clamp_min(1)
        masks, confidence = masks.cpu().numpy(), confidence.cpu().numpy()
        return {oid: Prediction(masks[i], float(confidence[i])) for i, oid in enumerate(ids)}

    @torch.inference_mode()
    def accept(self, masks: dict[int, np.ndarray]) -> None:
        if not self.engines:
            return
        labels = self._labels(masks)
        with self.runtime.autocast():
            for engine in self.engines:
                if engine in self.joins:
                    engine.add_reference_frame(self._image, labels[engine], obj_nums=[max(engine.slots)],
                                               img_embs=self._features())
                    engine.store(self.joins[engine])
                else:
                    engine.update_short_term_memory(labels[engine])
        self.joins.clear()

    @torch.inference_mode()
    def embed(self, masks: dict[int, np.ndarray]) -> np.ndarray:
        regions = list(masks.values()) or [np.ones(self._frame.shape[:2], bool)]  # global when no object
        if self.embedder is not None:
            feats = torch.from_numpy(self.embedder.features(self._frame, regions))
        else:
            feats = self._backbone_features(regions)
        mean = F.normalize(feats.float(), dim=1).mean(0)
        return F.normalize(mean, dim=0).numpy()

    def _backbone_features(self, regions: list[np.ndarray]) -> torch.Tensor:
        features = self._features()[-1].float()  # (1, C, h, w): DeAOT's projected stride-16 features
        weights = F.adaptive_avg_pool2d(self.runtime.masks_to_device(regions)[:, None], features.shape[-2:])
        pooled = (weights * features).sum((2, 3)) / weights.sum((2, 3)).clamp_min(1e-6)
        return pooled.cpu()

    @torch.inference_mode()
    def write_memory(self, key: int) -> None:
        for engine in self.engines:
            engine.store(key)

    @torch.inference_mode()
    def evict_memory(self, key: int) -> None:
        for engine in self.engines:
            engine.drop(key)

    def memory_keys(self) -> list[int]:
        return sorted({k for e in self.engines for k in e.entries})

    def memory_bytes(self) -> int:
        return sum(e.memory_bytes() for e in self.engines)

    def reset(self) -> None:
        self.engines, self.where, self.joins = [], {}, {}
        self._frame = self._image = self._embs = None
        self._frame_id = -1


# -- the pipeline ------------------------------------------------------------------------------------------
def pipeline_weights(config: GpuPipelineConfig) -> dict[str, Path]:
    """The checkpoint files this configuration loads, by model."""
    paths = {config.model: locate(config.model, config.weights_dir, config.model_weights)}
    if config.sam_hq:
        paths[config.sam_model] = locate(config.sam_model, config.weights_dir, config.sam_weights)
    if config.sam_hq or config.memory_embedding == "dino":
        paths[config.dino_model] = locate(config.dino_model, config.weights_dir, config.dino_weights)
    return paths


def fetch_command(paths: dict[str, Path]) -> str:
    folder = next(iter(paths.values())).parent
    return (f"fetch them with `{FETCH_COMMAND} --models {' '.join(paths)} --dir {folder}` "
            f"(or `{FETCH_MODULE} ...` with the same arguments)")


def gpu_pipeline_available(config: GpuPipelineConfig) -> tuple[bool, str]:
    """Whether ``backend: auto`` should take this pipeline, and why (or why not)."""
    if config.device == "cpu":
        return False, "hqsmem.device=cpu was requested"
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    paths = pipeline_weights(config)
    gone = missing(paths)
    if gone:
        return False, f"CUDA is available but weights are missing: {', '.join(gone)}; {fetch_command(paths)}"
    return True, f"CUDA device {torch.cuda.get_device_name()} and weights for {', '.join(paths)} found"


def build_gpu_tracker(config: GpuPipelineConfig, core: HQSMemConfig) -> HQSMemTracker:
    """DeAOT + smart memory (+ SAM-HQ proposals verified by DINO when ``sam_hq``), loaded from the
    configured checkpoints; a missing or unusable file raises ``WeightsError`` saying how to fetch it."""
    runtime = Runtime(resolve_device(config.device), config.precision)
    paths = pipeline_weights(config)
    gone = missing(paths)
    if gone:  # all of them at once, before minutes of loading
        raise WeightsError(f"weights missing: {', '.join(gone)}; {fetch_command(paths)}")
    dino = None
    if config.dino_model in paths:
        dino = DinoVerifier(build_dino(config.dino_model, paths[config.dino_model]), runtime,
                            config.dino_crop, config.dino_context)
    backend = DeAOTBackend(build_deaot(config.model, paths[config.model]), runtime,
                           config.max_short_edge, dino if config.memory_embedding == "dino" else None)
    if not config.sam_hq:
        return HQSMemTracker(backend, core)  # box-only targets: GrabCut
    proposer = SamHQProposer(build_sam_hq(config.sam_model, paths[config.sam_model]), runtime)
    refiner = VerifiedRefiner(proposer, dino, core.refiner)
    return HQSMemTracker(backend, core, refiner, box_to_mask=ProposalBoxInit(refiner))
