"""Builds a tracker from settings: picks the backend (and refiner), like sam2's build_sam.

``backend: auto`` takes the hqsmem pipeline (DeAOT + SAM-HQ + DINO) when a CUDA device and its weights
are present, otherwise the CPU backend, and says which and why. The backends build their own pieces; only
this module puts them into an ``HQSMemTracker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends.cpu import CpuBackend, CpuBackendConfig
from .backends.hqsmem_config import HQSMemPipelineConfig
from .box_init import BoxPromptInit
from .config import param
from .depth import DepthConfig
from .memory import MemoryConfig
from .refine import RefinerConfig
from .tracker import HQSMemConfig, HQSMemTracker, TrackerConfig

BACKENDS = ("auto", "cpu", "hqsmem")


@dataclass(frozen=True)
class Settings:
    backend: str = param("auto", "Base model: hqsmem (DeAOT + SAM-HQ + DINO, needs a GPU and weights for speed), "
                         "cpu (optical flow + EfficientNet-Lite0, no GPU, no download), or auto",
                         choices=BACKENDS)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    cpu: CpuBackendConfig = field(default_factory=CpuBackendConfig)
    hqsmem: HQSMemPipelineConfig = field(default_factory=HQSMemPipelineConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    @property
    def core(self) -> HQSMemConfig:
        return HQSMemConfig(self.tracker, self.memory, self.refiner)


def choose_backend(settings: Settings) -> tuple[str, str]:
    """(backend name, reason) for the ``backend`` setting on this machine."""
    if settings.backend != "auto":
        return settings.backend, f"backend={settings.backend} was requested"
    from .backends.hqsmem_config import hqsmem_available
    ok, why = hqsmem_available(settings.hqsmem)
    return ("hqsmem", why) if ok else ("cpu", why)


def build_cpu_tracker(config: CpuBackendConfig, core: HQSMemConfig) -> HQSMemTracker:
    """Flow + features, no refiner; box-only targets start from GrabCut."""
    return HQSMemTracker(CpuBackend(config), core)


def build_hqsmem_tracker(config: HQSMemPipelineConfig, core: HQSMemConfig) -> HQSMemTracker:
    """DeAOT + smart memory, with SAM-HQ proposals verified by DINO when ``config.sam_hq``; then a box-only
    target starts from SAM-HQ's mask for its box, else from GrabCut."""
    from .backends.hqsmem import build_pipeline
    backend, refiner = build_pipeline(config, core.refiner)
    if refiner is None:
        return HQSMemTracker(backend, core)
    return HQSMemTracker(backend, core, refiner, box_to_mask=BoxPromptInit(refiner.proposer))


def build_tracker(settings: Settings = Settings()) -> tuple[HQSMemTracker, str]:
    """The tracker for ``settings`` and a line saying which backend runs and why."""
    name, why = choose_backend(settings)
    if name == "cpu":
        tracker = build_cpu_tracker(settings.cpu, settings.core)
    else:
        tracker = build_hqsmem_tracker(settings.hqsmem, settings.core)
    return tracker, f"backend {name}: {why}"
