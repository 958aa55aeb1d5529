"""Where the GPU pipeline's checkpoints live, how they are read, and how they are fetched.

Every checkpoint is kept under its official file name in one folder (``weights_dir``; default
``$HQSMEM_WEIGHTS`` or ``~/.cache/hqsmem_ros/weights``), in its official format:
DeAOT model-zoo ``{'state_dict': ...}`` .pth, SAM-HQ state-dict .pth, DINO / DINOv2 state-dict .pth.
A missing or unreadable file raises :class:`WeightsError` naming the file and the command that fetches it.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

FETCH_COMMAND = "ros2 run hqsmem_ros weights"
FETCH_MODULE = "python -m hqsmem_ros.tools.weights"


@dataclass(frozen=True)
class Checkpoint:
    model: str  # the model choice it serves (a GpuPipelineConfig value)
    kind: str  # deaot | samhq | dino
    filename: str
    url: str
    sha256: str | None = None  # when the publisher states one; the Hugging Face hub also sends it per file


def _gdrive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def _hq_sam(name: str) -> str:
    return f"https://huggingface.co/lkeab/hq-sam/resolve/main/{name}"


# DeAOT: the model zoo of yoxu515/aot-benchmark (PRE_YTB_DAV stage); SAM-HQ: lkeab/hq-sam on the hub;
# DINO / DINOv2: Meta's releases (the URLs timm's pretrained configs name).
CHECKPOINTS: dict[str, Checkpoint] = {c.model: c for c in (
    Checkpoint("deaott", "deaot", "DeAOTT_PRE_YTB_DAV.pth", _gdrive("1ThWIZQS03cYWx1EKNN8MIMnJS5eRowzr")),
    Checkpoint("deaots", "deaot", "DeAOTS_PRE_YTB_DAV.pth", _gdrive("1YwIAV5tBtn5spSFxKLBQBEQGwPHyQlHi")),
    Checkpoint("deaotb", "deaot", "DeAOTB_PRE_YTB_DAV.pth", _gdrive("1BHxsonnvJXylqHlZ1zJHHc-ymKyq-CFf")),
    Checkpoint("deaotl", "deaot", "DeAOTL_PRE_YTB_DAV.pth", _gdrive("18elNz_wi9JyVBcIUYKhRdL08MA-FqHD5")),
    Checkpoint("r50_deaotl", "deaot", "R50_DeAOTL_PRE_YTB_DAV.pth", _gdrive("1QoChMkTVxdYZ_eBlZhK2acq9KMQZccPJ")),
    Checkpoint("swinb_deaotl", "deaot", "SwinB_DeAOTL_PRE_YTB_DAV.pth",
               _gdrive("1g4E-F0RPOx9Nd6J7tU9AE1TjsouL4oZq")),
    Checkpoint("vit_tiny", "samhq", "sam_hq_vit_tiny.pth", _hq_sam("sam_hq_vit_tiny.pth")),
    Checkpoint("vit_b", "samhq", "sam_hq_vit_b.pth", _hq_sam("sam_hq_vit_b.pth")),
    Checkpoint("vit_l", "samhq", "sam_hq_vit_l.pth", _hq_sam("sam_hq_vit_l.pth")),
    Checkpoint("vit_h", "samhq", "sam_hq_vit_h.pth", _hq_sam("sam_hq_vit_h.pth")),
    Checkpoint("vit_small_patch16_224.dino", "dino", "dino_deitsmall16_pretrain.pth",
               "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"),
    Checkpoint("vit_base_patch16_224.dino", "dino", "dino_vitbase16_pretrain.pth",
               "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    Checkpoint("vit_small_patch14_dinov2.lvd142m", "dino", "dinov2_vits14_pretrain.pth",
               "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"),
    Checkpoint("vit_base_patch14_dinov2.lvd142m", "dino", "dinov2_vitb14_pretrain.pth",
               "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"),
)}


class WeightsError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit its model (the message says how to fix it)."""


def default_dir() -> Path:
    return Path(os.environ.get("HQSMEM_WEIGHTS") or Path.home() / ".cache" / "hqsmem_ros" / "weights")


def locate(model: str, weights_dir: str = "", override: str = "") -> Path:
    """The file for ``model``: ``override`` when set, else its official name in ``weights_dir``."""
    if override:
        return Path(override).expanduser()
    if model not in CHECKPOINTS:
        raise WeightsError(f"no checkpoint is known for model {model!r} (known: {', '.join(CHECKPOINTS)})")
    return (Path(weights_dir).expanduser() if weights_dir else default_dir()) / CHECKPOINTS[model].filename


def fetch_hint(model: str, path: Path) -> str:
    return (f"fetch it with `{FETCH_COMMAND} --models {model} --dir {path.parent}` "
            f"(or `{FETCH_MODULE} --models {model} --dir {path.parent}`)")


def missing(paths: dict[str, Path]) -> list[str]:
    """``model (path)`` for each entry whose file does not exist."""
    return [f"{model} ({path})" for model, path in paths.items() if not path.is_file()]


def read_state_dict(model: str, path: Path, map_location: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from ``state_dict`` / ``model`` and a DataParallel
    ``module.`` prefix; loaded with ``map_location`` so a GPU-saved file opens anywhere."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} for {model} does not exist; {fetch_hint(model, path)}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise WeightsError(f"weights file {path} for {model} is corrupt or unreadable "
                           f"({type(exc).__name__}: {exc}); {fetch_hint(model, path)}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} for {model} holds no state dict; {fetch_hint(model, path)}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], model: str, path: Path,
              ignore: Callable[[str], bool] = lambda key: False) -> None:
    """Load ``state`` into ``module`` strictly (keys for which ``ignore`` is true may be absent or extra):
    a checkpoint of another variant is an error, not a silently half-loaded model."""
    own = module.state_dict()
    missing_keys = [k for k in own if k not in state and not ignore(k)]
    unexpected = [k for k in state if k not in own and not ignore(k)]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing_keys or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                           for what, keys in (("missing", missing_keys), ("unexpected", unexpected),
                                              ("wrong shape", wrong)) if keys)
        raise WeightsError(f"weights file {path} does not fit model {model} ({detail}); it may be another "
                           f"variant's file or corrupt; {fetch_hint(model, path)}")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(checkpoint: Checkpoint, directory: Path, log: Callable[[str], None] = print) -> Path:
    """Fetch ``checkpoint`` into ``directory`` (via a .part file, renamed once complete and verified
    against the published sha256: the checkpoint's own, else the one the Hugging Face hub sends)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint.filename
    part = target.with_name(target.name + ".part")
    log(f"downloading {checkpoint.url} -> {target}")
    request = urllib.request.Request(checkpoint.url, headers={"User-Agent": "hqsmem_ros"})
    with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as out:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise WeightsError(f"{checkpoint.url} answered with a web page, not a file (quota or link change?); "
                               f"download {checkpoint.filename} by hand into {directory}")
        etag = (response.headers.get("X-Linked-Etag") or "").strip('"')
        while block := response.read(1 << 20):
            out.write(block)
    expected = checkpoint.sha256 or (etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None)
    if expected:
        actual = sha256(part)
        if actual != expected:
            part.unlink()
            raise WeightsError(f"{checkpoint.filename}: sha256 {actual} does not match the published {expected}")
        log(f"sha256 verified: {expected}")
    part.replace(target)
    return target
