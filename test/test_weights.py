"""Checkpoints: official-format files round-trip through the node's loading code; missing, corrupt and
wrong-variant files are clear errors naming the file and the fetch command; the fetch verifies sha256."""

import hashlib

import pytest
import torch

from hqsmem_ros.core.backends.deaot import (GpuPipelineConfig, build_deaot, build_gpu_tracker,
                                            gpu_pipeline_available)
from hqsmem_ros.core.dino import build_dino
from hqsmem_ros.core.samhq import build_sam_hq
from hqsmem_ros.core.tracker import HQSMemConfig
from hqsmem_ros.core.weights import CHECKPOINTS, Checkpoint, WeightsError, download, locate
from hqsmem_ros.tools import weights as weights_tool

DEFAULT = GpuPipelineConfig()


def _same(model, state):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items() if k in own)


def test_random_checkpoints_round_trip_through_the_loaders(weights_dir):
    deaot_file = locate(DEFAULT.model, str(weights_dir))
    saved = torch.load(deaot_file, weights_only=True)
    assert set(saved) == {"state_dict"}  # model-zoo layout
    assert _same(build_deaot(DEFAULT.model, deaot_file), saved["state_dict"])

    sam_file = locate(DEFAULT.sam_model, str(weights_dir))
    assert _same(build_sam_hq(DEFAULT.sam_model, sam_file), torch.load(sam_file, weights_only=True))

    dino_file = locate(DEFAULT.dino_model, str(weights_dir))
    dino_state = torch.load(dino_file, weights_only=True)
    assert "cls_token" in dino_state and not any(k.startswith("head.") for k in dino_state)  # DINO's layout
    assert _same(build_dino(DEFAULT.dino_model, dino_file), dino_state)


def test_dataparallel_prefix_is_accepted(weights_dir, tmp_path):
    state = torch.load(locate(DEFAULT.model, str(weights_dir)), weights_only=True)["state_dict"]
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert _same(build_deaot(DEFAULT.model, path), state)


@pytest.mark.parametrize("build, model", [(build_deaot, "deaott"), (build_sam_hq, "vit_tiny"),
                                          (build_dino, DEFAULT.dino_model)])
def test_missing_file_names_the_file_and_the_fetch_command(build, model, tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(WeightsError) as err:
        build(model, path)
    assert str(path) in str(err.value) and "ros2 run hqsmem_ros weights" in str(err.value)
    assert "python -m hqsmem_ros.tools.weights" in str(err.value)


@pytest.mark.parametrize("build, model", [(build_deaot, "deaott"), (build_sam_hq, "vit_tiny"),
                                          (build_dino, DEFAULT.dino_model)])
def test_corrupt_file_is_a_clear_error(build, model, weights_dir, tmp_path):
    path = tmp_path / CHECKPOINTS[model].filename
    path.write_bytes((weights_dir / CHECKPOINTS[model].filename).read_bytes()[:4096])  # truncated download
    with pytest.raises(WeightsError, match="corrupt") as err:
        build(model, path)
    assert str(path) in str(err.value) and "weights --models" in str(err.value)


def test_another_variants_file_does_not_load_silently(tmp_path):
    path = tmp_path / "deaots.pth"
    torch.save({"state_dict": build_deaot("deaots", None).state_dict()}, path)
    with pytest.raises(WeightsError, match="does not fit model deaott"):
        build_deaot("deaott", path)


def test_build_reports_the_missing_file(tmp_path):
    with pytest.raises(WeightsError) as err:
        build_gpu_tracker(GpuPipelineConfig(str(tmp_path), device="cpu"), HQSMemConfig())
    for name in ("DeAOTT_PRE_YTB_DAV.pth", "sam_hq_vit_tiny.pth", "dino_deitsmall16_pretrain.pth",
                 "ros2 run hqsmem_ros weights --models deaott vit_tiny"):
        assert name in str(err.value)


def test_availability_says_what_is_missing(weights_dir, tmp_path, monkeypatch):
    ok, why = gpu_pipeline_available(GpuPipelineConfig(str(weights_dir)))
    if not torch.cuda.is_available():
        assert not ok and "CUDA" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "test GPU")
    ok, why = gpu_pipeline_available(GpuPipelineConfig(str(tmp_path)))
    assert not ok and "sam_hq_vit_tiny.pth" in why and "ros2 run hqsmem_ros weights" in why
    assert gpu_pipeline_available(GpuPipelineConfig(str(weights_dir)))[0]
    assert not gpu_pipeline_available(GpuPipelineConfig(str(weights_dir), device="cpu"))[0]


def test_download_verifies_the_published_checksum(tmp_path):
    source = tmp_path / "src.pth"
    source.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    fetched = download(Checkpoint("x", "dino", "x.pth", source.as_uri(), good), tmp_path / "ok", log=lambda s: None)
    assert fetched.read_bytes() == source.read_bytes()
    with pytest.raises(WeightsError, match="does not match"):
        download(Checkpoint("x", "dino", "x.pth", source.as_uri(), "0" * 64), tmp_path / "bad", log=lambda s: None)
    assert not any((tmp_path / "bad").iterdir())  # nothing half-written is left to be loaded later


def test_cli_lists_and_rejects_unknown_models(weights_dir, capsys):
    assert weights_tool.main(["--list", "--dir", str(weights_dir)]) == 0
    assert "present" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        weights_tool.main(["--models", "nope", "--dir", str(weights_dir)])
