"""Builds a tracker from settings: picks the backend (and refiner), like sam2's build_sam.

``backend: auto`` takes the GPU pipeline (DeAOT + SAM-HQ + DINO) when a CUDA device and its weights
are present, otherwise the CPU backend, and says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends.cpu import CpuBackendConfig
from .backends.deaot import GpuPipelineConfig
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
    hqsmem: GpuPipelineConfig = field(default_factory=GpuPipelineConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    @property
    def core(self) -> HQSMemConfig:
        return HQSMemConfig(self.tracker, self.memory, self.refiner)


def choose_backend(settings: Settings) -> tuple[str, str]:
    """(backend name, reason) for the ``backend`` setting on this machine."""
    if settings.backend != "auto":
        return settings.backend, f"backend={settings.backend} was requested"
    from .backends.deaot import gpu_pipeline_available
    ok, why = gpu_pipeline_available(settings.hqsmem)
    return ("hqsmem", why) if ok else ("cpu", why)


def build_tracker(settings: Settings = Settings()) -> tuple[HQSMemTracker, str]:
    """The tracker for ``settings`` and a line saying which backend runs and why."""
    name, why = choose_backend(settings)
    if name == "cpu":
        from .backends.cpu import build_cpu_tracker
        tracker = build_cpu_tracker(settings.cpu, settings.core)
    else:
        from .backends.deaot import build_gpu_tracker
        tracker = build_gpu_tracker(settings.hqsmem, settings.core)
    return tracker, f"backend {name}: {why}"
