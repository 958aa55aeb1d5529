"""Checkpoints: official-format files round-trip through the node's loading code; keys the model lacks
are ignored with a warning naming them; missing, corrupt, wrong-shape and wrong files are clear errors
naming the file, what it is when that can be told, and the fetch command; the fetch verifies sha256 where
it is published (a fake hub on 127.0.0.1) and says 'unverified' where not."""

import argparse
import hashlib
import http.server
import logging
import threading
from pathlib import Path

import pytest
import torch

from hqsmem_ros.core.backends.hqsmem import build_deaot
from hqsmem_ros.core.backends.hqsmem_config import HQSMemPipelineConfig, hqsmem_available
from hqsmem_ros.core.dino import build_dino
from hqsmem_ros.core.factory import build_hqsmem_tracker
from hqsmem_ros.core.samhq import build_sam_hq
from hqsmem_ros.core.tracker import HQSMemConfig
from hqsmem_ros.core.weights import CHECKPOINTS, Checkpoint, WeightsError, download, locate
from hqsmem_ros.tools import weights as weights_tool

DEFAULT = HQSMemPipelineConfig()


def _same(model, state):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items() if k in own)


def test_random_checkpoints_round_trip_through_the_loaders(weights_dir):
    deaot_file = locate(DEFAULT.model, str(weights_dir))
    saved = torch.load(deaot_file, weights_only=True)
    assert set(saved) == {"state_dict", "optimizer", "scaler"}  # aot-benchmark's save_network layout
    assert saved["optimizer"]["state"] and "scale" in saved["scaler"]
    assert _same(build_deaot(DEFAULT.model, deaot_file), saved["state_dict"])

    sam_file = locate(DEFAULT.sam_model, str(weights_dir))
    assert _same(build_sam_hq(DEFAULT.sam_model, sam_file), torch.load(sam_file, weights_only=True))

    dino_file = locate(DEFAULT.dino_model, str(weights_dir))
    dino_state = torch.load(dino_file, weights_only=True)
    assert "cls_token" in dino_state and not any(k.startswith("head.") for k in dino_state)  # DINO's layout
    assert _same(build_dino(DEFAULT.dino_model, dino_file), dino_state)


def test_dinov2_file_carries_its_mask_token_and_loads(tmp_path, caplog):
    name = "vit_small_patch14_dinov2.lvd142m"
    path = weights_tool.write_random(CHECKPOINTS[name], tmp_path)
    state = torch.load(path, weights_only=True)
    assert state["mask_token"].shape == (1, 384) and state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    with caplog.at_level(logging.WARNING, logger="hqsmem_ros.weights"):
        model = build_dino(name, path)
    assert _same(model, state) and "mask_token" not in model.state_dict()
    assert not caplog.records  # timm's conversion drops the token: nothing unexpected is left


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


LOADERS = [(build_deaot, "deaott"), (build_sam_hq, "vit_tiny"), (build_dino, DEFAULT.dino_model)]


def _official_state(model, weights_dir):
    saved = torch.load(locate(model, str(weights_dir)), weights_only=True)
    return saved.get("state_dict", saved)


@pytest.mark.parametrize("build, model", LOADERS)
def test_keys_the_model_lacks_are_ignored_with_a_warning_naming_them(build, model, weights_dir, tmp_path, caplog):
    state = _official_state(model, weights_dir)
    path = tmp_path / "stale.pth"
    torch.save({**state, "stale_branch.weight": torch.ones(3), "old_head.bias": torch.ones(2)}, path)
    with caplog.at_level(logging.WARNING, logger="hqsmem_ros.weights"):
        loaded = build(model, path)
    assert _same(loaded, state)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "stale_branch.weight" in warning and "old_head.bias" in warning and str(path) in warning


@pytest.mark.parametrize("build, model", LOADERS)
def test_missing_keys_and_wrong_shapes_stay_errors(build, model, weights_dir, tmp_path):
    state = _official_state(model, weights_dir)
    dropped, reshaped = sorted(state)[-1], sorted(state)[0]
    torch.save({k: v for k, v in state.items() if k != dropped}, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing: " + dropped.replace(".", r"\.")):
        build(model, tmp_path / "missing.pth")
    torch.save({**state, reshaped: torch.zeros(7, 1)}, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"wrong shape.*" + reshaped.replace(".", r"\.") + r" \(7, 1\)"):
        build(model, tmp_path / "shape.pth")


@pytest.mark.parametrize("other, named", [("deaots", "deaots"), ("deaotb", "deaotb or deaotl")])
def test_another_deaot_variants_file_names_the_variant(other, named, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": build_deaot(other, None).state_dict()}, path)
    with pytest.raises(WeightsError, match="is not a deaott checkpoint") as err:
        build_deaot("deaott", path)  # DeAOT-S holds every DeAOT-T key: tolerance must not load it
    assert f"those of {named} (" in str(err.value) and "set hqsmem.model" in str(err.value)
    assert CHECKPOINTS[other].filename in str(err.value) and "weights --models deaott" in str(err.value)


def test_a_file_that_is_no_deaot_variant_gets_the_generic_message(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(WeightsError, match="another model's file or corrupt"):
        build_deaot("deaott", path)


def test_another_sam_hq_variant_and_plain_sam_are_told_apart(tmp_path):
    from hqsmem_ros.core.samhq import _random_sam_hq
    with torch.device("meta"):  # a ViT-B's shapes without its memory
        shapes = {k: v.shape for k, v in _random_sam_hq("vit_b").state_dict().items()}
    # broadcast views of one zero: torch.save stores the single element, so the file is small
    vit_b = {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}
    torch.save(vit_b, tmp_path / "sam_hq_vit_b.pth")
    with pytest.raises(WeightsError, match=r"those of vit_b \(sam_hq_vit_b\.pth\): set hqsmem\.sam_model"):
        build_sam_hq("vit_tiny", tmp_path / "sam_hq_vit_b.pth")
    hq_parts = (".hf_", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
    torch.save({k: v for k, v in vit_b.items() if not any(part in k for part in hq_parts)},
               tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(WeightsError, match="SAM checkpoint without SAM-HQ's HQ output token"):
        build_sam_hq("vit_b", tmp_path / "sam_vit_b_01ec64.pth")


def test_dino_full_checkpoint_asks_for_the_backbone_file(weights_dir, tmp_path):
    backbone = _official_state(DEFAULT.dino_model, weights_dir)
    net = {**{f"backbone.{k}": v for k, v in backbone.items()}, "head.last_layer.weight_g": torch.ones(65536, 1)}
    path = tmp_path / "dino_deitsmall16_pretrain_full_checkpoint.pth"
    torch.save({"student": {f"module.{k}": v for k, v in net.items()}, "teacher": net, "epoch": 100,
                "args": argparse.Namespace(arch="vit_small", patch_size=16),
                "dino_loss": {"center": torch.zeros(1, 8)}}, path)
    with pytest.raises(WeightsError, match="DINO full training checkpoint") as err:
        build_dino(DEFAULT.dino_model, path)
    assert "backbone-only file dino_deitsmall16_pretrain.pth (https://dl.fbaipublicfiles.com/" in str(err.value)


def test_a_dinov2_file_in_a_dino_model_is_refused_not_resampled(tmp_path):
    name = "vit_small_patch14_dinov2.lvd142m"
    path = weights_tool.write_random(CHECKPOINTS[name], tmp_path)
    with pytest.raises(WeightsError, match=f"patch size 14, model 16.*those of {name}.*set hqsmem.dino_model"):
        build_dino(DEFAULT.dino_model, path)


def test_build_reports_the_missing_file(tmp_path):
    with pytest.raises(WeightsError) as err:
        build_hqsmem_tracker(HQSMemPipelineConfig(str(tmp_path), device="cpu"), HQSMemConfig())
    for name in ("DeAOTT_PRE_YTB_DAV.pth", "sam_hq_vit_tiny.pth", "dino_deitsmall16_pretrain.pth",
                 "ros2 run hqsmem_ros weights --models deaott vit_tiny"):
        assert name in str(err.value)


def test_availability_says_what_is_missing(weights_dir, tmp_path, monkeypatch):
    ok, why = hqsmem_available(HQSMemPipelineConfig(str(weights_dir)))
    if not torch.cuda.is_available():
        assert not ok and "CUDA" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "test GPU")
    ok, why = hqsmem_available(HQSMemPipelineConfig(str(tmp_path)))
    assert not ok and "sam_hq_vit_tiny.pth" in why and "ros2 run hqsmem_ros weights" in why
    assert hqsmem_available(HQSMemPipelineConfig(str(weights_dir)))[0]
    assert not hqsmem_available(HQSMemPipelineConfig(str(weights_dir), device="cpu"))[0]


PAYLOAD = b"weights" * 5000
GOOD = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def hub():
    """A fake model host on 127.0.0.1: /resolve/<etag> answers 302 to /cdn with that X-Linked-Etag (as the
    Hugging Face hub does; the CDN's answer carries none), /plain/ serves the file with no checksum,
    /page is a web page."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/resolve/"):
                self.send_response(302)
                self.send_header("Location", "/cdn/file.pth")
                self.send_header("X-Linked-Etag", f'"{self.path.rsplit("/", 1)[1]}"')
                self.end_headers()
                return
            page = self.path == "/page"
            body = b"<html>quota exceeded</html>" if page else PAYLOAD
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if page else "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(url, directory, pinned=None):
    lines = []
    path = download(Checkpoint("x", "samhq", "x.pth", url, pinned), directory, log=lines.append)
    return path, lines


def test_download_verifies_the_hash_the_hub_sends_on_the_redirect(hub, tmp_path):
    path, lines = _fetch(f"{hub}/resolve/{GOOD}", tmp_path / "ok")
    assert path.read_bytes() == PAYLOAD and any(f"sha256 verified (sent by the hub): {GOOD}" in s for s in lines)
    with pytest.raises(WeightsError, match=f"does not match the published {'0' * 64}"):
        _fetch(f"{hub}/resolve/{'0' * 64}", tmp_path / "bad")
    assert not any((tmp_path / "bad").iterdir())  # nothing half-written is left to be loaded later


def test_a_pinned_hash_is_checked_and_no_hash_is_said_unverified(hub, tmp_path):
    _, lines = _fetch(f"{hub}/plain/x.pth", tmp_path / "pinned", pinned=GOOD)
    assert any("sha256 verified (pinned)" in s for s in lines)
    with pytest.raises(WeightsError, match="does not match"):
        _fetch(f"{hub}/resolve/{GOOD}", tmp_path / "pinned_bad", pinned="1" * 64)  # the pin wins
    path, lines = _fetch(f"{hub}/plain/x.pth", tmp_path / "none")
    assert path.is_file() and any(f"x.pth: unverified (its host publishes no checksum); sha256 {GOOD}" in s
                                  for s in lines)
    with pytest.raises(WeightsError, match="web page"):
        _fetch(f"{hub}/page", tmp_path / "page")
    assert not any((tmp_path / "page").iterdir())


def test_which_files_are_verified_is_what_the_readme_says():
    hub_files = sorted(c.filename for c in CHECKPOINTS.values() if c.url.startswith("https://huggingface.co/"))
    assert hub_files == ["sam_hq_vit_b.pth", "sam_hq_vit_h.pth", "sam_hq_vit_l.pth", "sam_hq_vit_tiny.pth"]
    assert not any(c.sha256 for c in CHECKPOINTS.values())  # no host publishes one for the others
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "verified against the sha256 the Hugging Face hub publishes" in readme and "unverified" in readme


def test_cli_lists_and_rejects_unknown_models(weights_dir, capsys):
    assert weights_tool.main(["--list", "--dir", str(weights_dir)]) == 0
    assert "present" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        weights_tool.main(["--models", "nope", "--dir", str(weights_dir)])
