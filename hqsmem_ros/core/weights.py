"""Where the GPU pipeline's checkpoints live, how they are read, and how they are fetched.

Every checkpoint is kept under its official file name in one folder (``weights_dir``; default
``$HQSMEM_WEIGHTS`` or ``~/.cache/hqsmem_ros/weights``), in its official format: DeAOT model-zoo
``{'state_dict', 'optimizer', 'scaler'}`` .pth, SAM-HQ state-dict .pth, DINO / DINOv2 backbone state-dict .pth.
A missing, unreadable or wrong file raises :class:`WeightsError` naming the file, what it looks like when
that can be told, and the command that fetches the right one.

Loading is as tolerant as the official loaders (aot-benchmark's ``load_network`` drops and reports keys the
model lacks, sam-hq loads with ``strict=False``): keys the model does not have are ignored with a warning
naming them. Missing keys and wrong shapes stay errors: the model would run half-initialised.

Checksums: the Hugging Face hub sends each LFS file's sha256 as ``X-Linked-Etag`` on the redirect to its
CDN, which :func:`download` reads without following it (the SAM-HQ files). Google Drive (DeAOT) and
dl.fbaipublicfiles.com (DINO, DINOv2) publish none: those files are logged as unverified.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

FETCH_COMMAND = "ros2 run hqsmem_ros weights"
FETCH_MODULE = "python -m hqsmem_ros.tools.weights"
# The parameter that picks each kind's variant, named when a file turns out to be another variant's.
VARIANT_PARAM = {"deaot": "hqsmem.model", "samhq": "hqsmem.sam_model", "dino": "hqsmem.dino_model"}
logger = logging.getLogger("hqsmem_ros.weights")


@dataclass(frozen=True)
class Checkpoint:
    model: str  # the model choice it serves (an HQSMemPipelineConfig value)
    kind: str  # deaot | samhq | dino
    filename: str
    url: str
    sha256: str | None = None  # pinned when the publisher states one (none of the current hosts does)


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


def _load(path: Path, map_location) -> object:
    # Training checkpoints keep their argparse.Namespace next to the tensors (DINO's full checkpoints):
    # plain data, allowed so that such a file gets its own message instead of "unreadable".
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location=map_location, weights_only=True)


def read_state_dict(model: str, path: Path, map_location: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from ``state_dict`` / ``model`` (the rest of a training file,
    e.g. DeAOT's ``optimizer`` and ``scaler``, is not needed) and a DataParallel ``module.`` prefix."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} for {model} does not exist; {fetch_hint(model, path)}")
    try:
        obj = _load(path, map_location)
    except Exception as exc:
        raise WeightsError(f"weights file {path} for {model} is corrupt or unreadable "
                           f"({type(exc).__name__}: {exc}); {fetch_hint(model, path)}") from exc
    if isinstance(obj, dict) and {"teacher", "student"} <= set(obj):
        wanted = CHECKPOINTS.get(model)
        raise WeightsError(f"weights file {path} for {model} is a DINO full training checkpoint (teacher and "
                           f"student networks with their projection heads); the node loads the backbone-only "
                           f"file{f' {wanted.filename} ({wanted.url})' if wanted else ''}; {fetch_hint(model, path)}")
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} for {model} holds no state dict; {fetch_hint(model, path)}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _listed(keys: list[str], most: int = 8) -> str:
    return ", ".join(keys[:most]) + (f" ... (+{len(keys) - most} more)" if len(keys) > most else "")


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], model: str, path: Path,
              ignore: Callable[[str], bool] = lambda key: False,
              variants: dict[str, Callable[[], torch.nn.Module]] | None = None) -> list[str]:
    """Load ``state`` into ``module``; returns the keys it ignored. Every key of the module must be there
    with its shape (keys for which ``ignore`` is true may be absent), else ``WeightsError``; keys the module
    lacks are ignored with a warning, unless the file is whole another of ``variants`` (name -> random
    model): a DeAOT-S file holds every DeAOT-T key and would load silently."""
    own = module.state_dict()
    missing_keys = [k for k in own if k not in state and not ignore(k)]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    unexpected = [k for k in state if k not in own and not ignore(k)]
    if variants and (missing_keys or wrong or unexpected):
        fits = fitting_variants(state, variants, ignore)
        if fits and model not in fits:
            kind = CHECKPOINTS[model].kind if model in CHECKPOINTS else ""
            raise WeightsError(f"weights file {path} is not a {model} checkpoint: {variant_hint(kind, fits)}; "
                               f"{fetch_hint(model, path)}")
    if missing_keys or wrong:
        detail = "; ".join(f"{what}: {_listed(keys, 3)}" for what, keys in
                           (("missing", missing_keys), ("wrong shape (file vs model)", wrong)) if keys)
        raise WeightsError(f"weights file {path} does not fit model {model} ({detail}); it may be another "
                           f"model's file or corrupt; {fetch_hint(model, path)}")
    if unexpected:
        logger.warning("weights file %s for %s: %d key(s) the model does not have, ignored (as the official loader "
                       "does): %s", path, model, len(unexpected), _listed(unexpected))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return unexpected


def _shapes(build: Callable[[], torch.nn.Module], ignore: Callable[[str], bool]) -> dict[str, torch.Size]:
    try:  # on the meta device: no memory, no initialisation (a ViT-H costs nothing)
        with torch.device("meta"):
            module = build()
    except RuntimeError:  # constructors that read tensor values (Swin's, TinyViT's drop-path schedule)
        module = build()
    return {k: v.shape for k, v in module.state_dict().items() if not ignore(k)}


def fitting_variants(state: dict[str, torch.Tensor], builders: dict[str, Callable[[], torch.nn.Module]],
                     ignore: Callable[[str], bool] = lambda key: False) -> list[str]:
    """The variants ``state`` is a checkpoint of: of those whose every key it holds with its shape, the ones
    with the most keys (a deeper variant's file also holds every key of a shallower one). Several when
    their shapes are the same (DeAOT-B and DeAOT-L)."""
    fits = {}
    for name, build in builders.items():
        shapes = _shapes(build, ignore)
        if all(k in state and state[k].shape == shape for k, shape in shapes.items()):
            fits[name] = len(shapes)
    return [name for name, n in fits.items() if n == max(fits.values())]


def variant_hint(kind: str, fits: list[str]) -> str:
    """What to tell a user whose file holds the weights of ``fits``."""
    names = " or ".join(fits)
    files = " / ".join(CHECKPOINTS[f].filename for f in fits if f in CHECKPOINTS)
    setting = f"set {VARIANT_PARAM[kind]} to {'it' if len(fits) == 1 else 'one of them'}, or " if kind else ""
    return f"its keys and shapes are those of {names} ({files}): {setting}fetch the file of the configured model"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """Hands every redirect back as an HTTPError: its headers (the hub's X-Linked-Etag) are read before
    the next hop, which the CDN's answer no longer carries."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_KeepRedirects)
_REDIRECTS = (301, 302, 303, 307, 308)


def _linked_sha256(headers) -> str | None:
    etag = (headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"')
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def open_following(url: str, opener: urllib.request.OpenerDirector = _OPENER, hops: int = 10):
    """(response, sha256 the hub published on the way or None) for ``url``, redirects followed by hand."""
    published = None
    for _ in range(hops):
        try:
            return opener.open(urllib.request.Request(url, headers={"User-Agent": "hqsmem_ros"}), timeout=60), published
        except urllib.error.HTTPError as exc:
            if exc.code not in _REDIRECTS or not exc.headers.get("Location"):
                raise
            published = published or _linked_sha256(exc.headers)
            url = urllib.parse.urljoin(url, exc.headers["Location"])
            exc.close()
    raise WeightsError(f"more than {hops} redirects from {url}")


def download(checkpoint: Checkpoint, directory: Path, log: Callable[[str], None] = print,
             opener: urllib.request.OpenerDirector = _OPENER) -> Path:
    """Fetch ``checkpoint`` into ``directory`` via a .part file, renamed once complete. Verified against
    its pinned sha256, else the one the hub sent with the redirect; with neither, logged as unverified."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint.filename
    part = target.with_name(target.name + ".part")
    log(f"downloading {checkpoint.url} -> {target}")
    response, published = open_following(checkpoint.url, opener)
    with response, open(part, "wb") as out:
        if "text/html" in response.headers.get("Content-Type", ""):
            part.unlink()
            raise WeightsError(f"{checkpoint.url} answered with a web page, not a file (quota or link change?); "
                               f"download {checkpoint.filename} by hand into {directory}")
        published = published or _linked_sha256(response.headers)
        while block := response.read(1 << 20):
            out.write(block)
    actual = sha256(part)
    expected = checkpoint.sha256 or published
    if expected is None:
        log(f"{checkpoint.filename}: unverified (its host publishes no checksum); sha256 {actual}")
    elif actual != expected:
        part.unlink()
        raise WeightsError(f"{checkpoint.filename}: sha256 {actual} does not match the published {expected}")
    else:
        log(f"{checkpoint.filename}: sha256 verified ({'pinned' if checkpoint.sha256 else 'sent by the hub'}): "
            f"{expected}")
    part.replace(target)
    return target
