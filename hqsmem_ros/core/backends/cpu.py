"""CPU backend (placeholder config; the implementation is being written)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import param


@dataclass(frozen=True)
class CpuBackendConfig:
    threads: int = param(2, "torch / OpenCV threads used by the CPU backend", min=1, max=64)


def build_cpu_tracker(config: CpuBackendConfig, core):
    raise NotImplementedError
