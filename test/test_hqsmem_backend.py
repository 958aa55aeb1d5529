"""The hqsmem backend, DeAOT with keyed long-term memory (random DeAOT-T in the model-zoo format, CPU, small
frames): the Backend contract, memory bounded by K + pinned where stock DeAOT grows, teacher forcing, objects
joining and leaving mid-stream, more than one engine, frames told apart by index, and the pipeline built
through the factory (a box-only target's first mask from SAM-HQ's box prompt)."""

import numpy as np
import pytest
import torch

from hqsmem_ros.core.backends.base import Backend
from hqsmem_ros.core import box_init
from hqsmem_ros.core.backends.hqsmem import HQSMemBackend, build_deaot, deaot_input_size
from hqsmem_ros.core.backends.hqsmem_config import HQSMemPipelineConfig
from hqsmem_ros.core.box_init import BoxPromptInit, grabcut_box_init
from hqsmem_ros.core.device import Runtime
from hqsmem_ros.core.factory import Settings, build_tracker
from hqsmem_ros.core.memory import MemoryConfig, SmartMemory
from hqsmem_ros.core.refine import RefinerConfig
from hqsmem_ros.core.tracker import update_memory
from hqsmem_ros.core.types import Frame, Target
from hqsmem_ros.core.weights import locate

H, W = 96, 128
RUNTIME = Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def model(weights_dir):
    return build_deaot("deaott", locate("deaott", str(weights_dir)))


@pytest.fixture
def backend(model):
    return HQSMemBackend(model, RUNTIME)


def frame(i, seed=0):
    """Frame i of random sequence ``seed``: one index, one image, as the tracker guarantees."""
    rng = np.random.default_rng(seed * 1000 + i)
    return Frame(seed * 1000 + i, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


BIG = Frame(10**6, np.zeros((H * 2, W * 2, 3), np.uint8))


def square(x, y, side=24):
    m = np.zeros((H, W), bool)
    m[y:y + side, x:x + side] = True
    return m


def drive(backend, memory, t, f, masks, new=()):
    """One frame the way HQSMemTracker sequences the Backend calls (every object forced present)."""
    preds = backend.step(f)
    for oid in new:
        backend.add_object(oid, f, masks[oid], key=t)
        memory.pin(t, t, backend.embed({oid: masks[oid]}), owner=oid)
    backend.accept(masks)
    update_memory(memory, backend, t, masks)
    return preds


def test_input_size_follows_the_evaluator():
    assert deaot_input_size(480, 640, 480, True) == (481, 641)
    assert deaot_input_size(1080, 1920, 480, True) == (481, 849)
    assert deaot_input_size(480, 640, 480, False) == (480, 640)
    assert deaot_input_size(20, 20, 480, True) == (17, 17)


def test_step_predicts_every_tracked_object(backend):
    assert isinstance(backend, Backend)
    assert backend.step(frame(0)) == {}
    backend.add_object(3, frame(0), square(10, 10), key=0)
    backend.add_object(5, frame(0), square(60, 40), key=0)
    backend.accept({3: square(10, 10), 5: square(60, 40)})
    assert backend.memory_keys() == [0]
    preds = backend.step(frame(1))
    assert set(preds) == {3, 5}
    for p in preds.values():
        assert p.mask.shape == (H, W) and p.mask.dtype == bool and 0.0 <= p.confidence <= 1.0
    assert not (preds[3].mask & preds[5].mask).any()  # one label per pixel


def test_a_frame_size_change_is_a_clear_error(backend):
    backend.add_object(1, frame(0), square(10, 10), key=0)
    backend.accept({1: square(10, 10)})
    with pytest.raises(ValueError, match="reset the tracker"):
        backend.step(BIG)
    backend.reset()
    assert backend.step(BIG) == {}


def test_a_buffer_refilled_in_place_is_a_new_frame_by_its_index(model):
    def run(first, then):
        backend = HQSMemBackend(model, Runtime(torch.device("cpu")))
        backend.add_object(1, first, square(10, 10), key=0)
        backend.accept({1: square(10, 10)})
        return backend.step(then())[1]

    buffer = frame(0).pixels.copy()

    def refill():  # the caller's one buffer, refilled with the next image
        buffer[:] = frame(1).pixels
        return Frame(1, buffer)

    refilled, fresh = run(Frame(0, buffer), refill), run(frame(0), lambda: frame(1))
    assert np.array_equal(refilled.mask, fresh.mask) and refilled.confidence == fresh.confidence


def test_the_device_copy_is_made_once_per_frame_index():
    runtime = Runtime(torch.device("cpu"))
    pixels = frame(0).pixels.copy()
    first = runtime.upload(Frame(0, pixels))
    assert runtime.upload(Frame(0, pixels)) is first
    pixels[:] = 0
    assert runtime.upload(Frame(1, pixels)).abs().sum() == 0


def test_memory_stays_within_k_plus_pinned_while_stock_deaot_grows(backend, model):
    from aot.networks.engines import build_engine

    capacity, n = 2, 12
    memory = SmartMemory(MemoryConfig(capacity=capacity, update_every=1, relevance_threshold=-1.0))
    stock = build_engine("deaotengine", phase="eval", aot_model=model, gpu_id=0, long_term_mem_gap=1)
    sizes, stock_frames = [], []
    with torch.inference_mode():
        for t in range(n):
            f, masks = frame(t, seed=1), {1: square(10 + t, 20)}
            drive(backend, memory, t, f, masks, new=[1] if t == 0 else [])
            sizes.append((len(backend.memory_keys()), backend.memory_bytes()))
            assert backend.memory_keys() == sorted(memory.entries)
            image = (RUNTIME.upload(f) / 255 - 0.45) / 0.225
            image = torch.nn.functional.interpolate(image, size=deaot_input_size(H, W, 480, True))
            label = torch.nn.functional.interpolate(torch.from_numpy(masks[1])[None, None].float(), image.shape[-2:])
            if t == 0:
                stock.add_reference_frame(image, label, obj_nums=[1], frame_step=0)
            else:
                stock.match_propogate_one_frame(image)
                stock.decode_current_logits((H, W))
                stock.update_memory(label)
            tokens = stock.aot_engines[0].long_term_memories[0][0].shape[0]
            stock_frames.append(tokens // stock.aot_engines[0].enc_hw)
    assert max(k for k, _ in sizes) == capacity + 1  # K frames + the pinned reference frame
    assert len({b for k, b in sizes if k == capacity + 1}) == 1  # bytes flat once full
    engine = backend.engines[0]
    assert engine.long_term_memories[0][0].shape[0] == (capacity + 1) * engine.enc_hw
    assert stock_frames[-1] == n  # stock DeAOT prepends every frame: grows without bound
    assert 0 in backend.memory_keys()  # the reference frame is never evicted


def test_accepted_masks_are_the_prior_and_what_memory_stores(model):
    def run(second_mask):
        backend = HQSMemBackend(model, RUNTIME)
        backend.add_object(1, frame(0), square(10, 10), key=0)
        backend.accept({1: square(10, 10)})
        backend.step(frame(1))
        backend.accept({1: second_mask})
        backend.write_memory(1)
        return backend, backend.step(frame(2))

    a, pred_a = run(square(10, 10))
    b, pred_b = run(square(70, 50))
    label = b.engines[0].entries[1].label[0, 0].numpy()
    resized = torch.nn.functional.interpolate(torch.from_numpy(square(70, 50))[None, None].float(),
                                              label.shape, mode="nearest")[0, 0].numpy() > 0.5
    assert np.array_equal(label == 1, resized)  # memory holds the accepted mask, not the prediction
    with torch.inference_mode():
        logits_a = a.engines[0].decode_current_logits((H, W))
        logits_b = b.engines[0].decode_current_logits((H, W))
    assert not torch.allclose(logits_a, logits_b)  # the next frame's prior is the accepted mask


def test_objects_join_and_leave_mid_stream(backend):
    memory = SmartMemory(MemoryConfig(capacity=2, update_every=1, relevance_threshold=-1.0))
    masks = {1: square(5, 5)}
    drive(backend, memory, 0, frame(0), masks, new=[1])
    drive(backend, memory, 1, frame(1), masks)
    masks[2] = square(70, 40)
    drive(backend, memory, 2, frame(2), masks, new=[2])
    engine = backend.engines[0]
    assert engine.slots == {1: 1, 2: 2} and 2 in engine.entries
    assert set(np.unique(engine.entries[2].label)) == {0, 1, 2}  # the join frame holds both objects
    assert set(drive(backend, memory, 3, frame(3), masks)) == {1, 2}

    backend.remove_object(1)
    for key in memory.release(1):
        backend.evict_memory(key)
    del masks[1]
    assert 0 not in backend.memory_keys()
    assert all((e.label != 1).all() for e in engine.entries.values())  # identity erased everywhere
    assert set(drive(backend, memory, 4, frame(4), masks)) == {2}
    masks[7] = square(10, 60)
    drive(backend, memory, 5, frame(5), masks, new=[7])
    assert engine.slots == {1: 7, 2: 2}  # the freed slot is reused
    assert set(drive(backend, memory, 6, frame(6), masks)) == {2, 7}


def test_forgetting_an_identity_refuses_memory_as_if_it_was_never_there(model):
    with torch.inference_mode():
        both, only = HQSMemBackend(model, RUNTIME), HQSMemBackend(model, RUNTIME)
        for b, objects in ((both, {1: square(5, 5), 2: square(70, 40)}), (only, {2: square(70, 40)})):
            b.add_object(1, frame(0), square(5, 5), key=0)
            b.add_object(2, frame(0), square(70, 40), key=0)
            b.accept(objects)
        both.remove_object(1)
        for x, y in zip(both.engines[0].long_term_memories, only.engines[0].long_term_memories):
            torch.testing.assert_close(x[3], y[3])  # ID_V re-fused from the label without object 1


def test_forgetting_in_a_deeper_model_refuses_every_layer():
    # From the second LSTT layer on, the ID branch's input was itself computed with every identity
    # present; only the label's identity embedding can be taken out (exact for DeAOT-T's single layer).
    backend = HQSMemBackend(build_deaot("deaots", None), RUNTIME)
    backend.add_object(1, frame(0), square(5, 5), key=0)
    backend.add_object(2, frame(0), square(70, 40), key=0)
    backend.accept({1: square(5, 5), 2: square(70, 40)})
    before = [layer[3].clone() for layer in backend.engines[0].entries[0].layers]
    backend.remove_object(1)
    after = backend.engines[0].entries[0].layers
    assert len(after) == 2 and all(not torch.allclose(b, a[3]) for b, a in zip(before, after))
    assert set(drive(backend, SmartMemory(), 1, frame(1), {2: square(70, 40)})) == {2}


def test_more_than_ten_objects_use_a_second_engine(backend):
    masks = {oid: square(8 * (oid % 12), 30 + 5 * (oid // 12), side=6) for oid in range(12)}
    for oid in masks:
        backend.add_object(oid, frame(0), masks[oid], key=0)
    backend.accept(masks)
    assert [len(e.slots) for e in backend.engines] == [10, 2]
    preds = backend.step(frame(1))
    assert set(preds) == set(masks)
    backend.accept(masks)
    backend.write_memory(1)
    assert backend.memory_keys() == [0, 1]
    backend.remove_object(10)
    backend.remove_object(11)
    assert len(backend.engines) == 1 and set(backend.step(frame(2))) == set(range(10))


def _two_region_frame():
    f = np.zeros((H, W, 3), np.uint8)
    f[:, W // 2:] = (255, 200, 30)
    return Frame(2 * 10**6, f)


def test_dino_embedding_is_object_centric_and_unit(model, weights_dir):
    from hqsmem_ros.core.dino import DinoVerifier, build_dino
    name = "vit_small_patch16_224.dino"
    backend = HQSMemBackend(model, RUNTIME, embedder=DinoVerifier(build_dino(name, locate(name, str(weights_dir))),
                                                                 RUNTIME, crop=64))
    backend.add_object(1, _two_region_frame(), square(5, 5), key=0)
    a, b, g = backend.embed({1: square(5, 5)}), backend.embed({1: square(80, 50)}), backend.embed({})
    for v in (a, b, g):
        assert v.ndim == 1 and abs(np.linalg.norm(v) - 1) < 1e-5
    assert a @ b < 0.9999 and a @ g < 0.9999


def test_backbone_embedding_pools_encoder_features_over_each_mask(weights_dir, monkeypatch):
    # Random MobileNetV2 weights flatten every feature to the projector's bias, so the encoder is
    # replaced by a map with two distinct halves to check the pooling itself.
    model = build_deaot("deaott", locate("deaott", str(weights_dir)))
    left, right = torch.zeros(256), torch.zeros(256)
    left[0], right[1] = 1.0, 1.0

    def encode_image(image):
        h, w = (s // 16 + 1 for s in image.shape[-2:])
        feats = left.view(1, 256, 1, 1).repeat(1, 1, h, w)
        feats[..., w // 2:] = right.view(1, 256, 1, 1)
        return [feats]

    monkeypatch.setattr(model, "encode_image", encode_image)
    backend = HQSMemBackend(model, RUNTIME)
    backend.add_object(1, _two_region_frame(), square(5, 5), key=0)
    a, b = backend.embed({1: square(5, 5)}), backend.embed({1: square(100, 50)})
    assert a[0] > 0.99 and b[1] > 0.99
    both = backend.embed({1: square(5, 5), 2: square(100, 50)})  # objects normalised, then averaged
    np.testing.assert_allclose(both[:2], [2 ** -0.5, 2 ** -0.5], atol=1e-6)


def _no_grabcut(*args, **kwargs):
    raise AssertionError("GrabCut ran on the hqsmem pipeline with SAM-HQ loaded")


@pytest.mark.parametrize("sam_hq", [True, False])
def test_factory_builds_the_pipeline_from_checkpoints(weights_dir, sam_hq, monkeypatch):
    settings = Settings(backend="hqsmem", memory=MemoryConfig(capacity=2, update_every=1),
                        refiner=RefinerConfig(similarity_threshold=-1.0),
                        hqsmem=HQSMemPipelineConfig(str(weights_dir), device="cpu", sam_hq=sam_hq,
                                                    memory_embedding="dino" if sam_hq else "backbone"))
    tracker, why = build_tracker(settings)
    assert "hqsmem" in why and (tracker.refiner is not None) == sam_hq
    if sam_hq:  # SAM-HQ makes a box-only target's first mask: GrabCut must not run
        monkeypatch.setattr(box_init, "grabcut_mask", _no_grabcut)
    first = tracker.process(frame(0).pixels, [Target(1, "a", box=(10, 10, 40, 40))])
    assert first.ok, first.status
    assert first.memory_frames == 1 and first.objects[0].present
    if sam_hq:  # SAM-HQ's first (HQ) mask for the box itself, recomputed here under a fresh index
        assert isinstance(tracker.box_to_mask, BoxPromptInit)
        cands = tracker.refiner.proposer.propose(Frame(-1, frame(0).pixels), {1: (10, 10, 40, 40)})[1]
        assert cands and np.array_equal(first.objects[0].mask, cands[0])
    else:
        assert tracker.box_to_mask is grabcut_box_init
    results = [tracker.process(frame(i).pixels, [Target(2, "b", mask=square(70, 40))] if i == 2 else [])
               for i in range(1, 5)]
    tracker.remove([1])
    results.append(tracker.process(frame(5).pixels))
    assert all(r.ok for r in results), [r.status for r in results]
    assert [o.obj_id for o in results[-2].objects] == [1, 2] and [o.obj_id for o in results[-1].objects] == [2]
    assert all(r.memory_frames <= 2 + 2 for r in results)
