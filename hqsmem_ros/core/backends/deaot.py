"""GPU pipeline (placeholder config; the implementation is being written)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import param


@dataclass(frozen=True)
class GpuPipelineConfig:
    device: str = param("auto", "auto (cuda when available), cuda, cuda:N or cpu", choices=None)


def gpu_pipeline_available(config: GpuPipelineConfig) -> tuple[bool, str]:
    return False, "the GPU pipeline is not built yet"


def build_gpu_tracker(config: GpuPipelineConfig, core):
    raise NotImplementedError
