"""The GPU check's --quick mode (CPU, tiny sizes): the same code the GPU machine runs, end to end, writing
random weights in the official layouts, building through the node's builder, and reporting every run."""

import json

from hqsmem_ros.tools import gpu_check


def test_quick_mode_runs_every_phase_and_writes_one_json(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    plan = gpu_check.QUICK
    assert result["weights"]["random"] and all(size > 0 for size in result["weights"]["files"].values())
    assert [(r["precision"], r["objects"]) for r in result["speed"]] == [("fp32", n) for n in plan.objects]
    for row in result["speed"]:
        full, alone = row["full"], row["deaot"]
        assert full["timed_frames"] == alone["timed_frames"] == plan.frames - plan.warmup
        for stage in ("base", "sam_encoder", "sam_decoder", "dino", "refine"):
            assert full["stages_ms"][stage]["p50"] > 0  # every stage ran: objects forced present
        assert "sam_encoder" not in alone["stages_ms"] and "refine" not in alone["stages_ms"]
        assert row["overhead"]["p50"] == full["frame_ms"]["p50"] / alone["frame_ms"]["p50"]
    memory = result["memory"]
    smart, stock = memory["smart"], memory["stock"]
    assert smart["frames"] == stock["frames"] == plan.memory_frames and not smart["truncated"]
    assert smart["memory_frames_max"] <= memory["capacity"] + 3  # K + one pinned reference per object
    assert stock["memory_frames_max"] == 1 + (plan.memory_frames - 1) // memory["memory_gap"]  # every gap-th frame
    assert smart["memory_tensors_mb"]["end"] > 0 and stock["memory_tensors_mb"]["end"] > 0
    printed = capsys.readouterr().out
    assert printed.count("| full pipeline |") == len(plan.objects) and "| stock DeAOT, memory |" in printed
    assert result["within_budget"]


def test_a_failed_configuration_is_a_row_not_a_lost_run():
    rows = [{"precision": "bf16", "error": "RuntimeError: no bf16 kernel"},
            {"precision": "fp16", "objects": 3, "full": {"error": "OutOfMemoryError: 2 GiB"},
             "deaot": {"error": "OutOfMemoryError: 1 GiB"}}]
    printed = gpu_check.table(rows, {"precision": "fp16", "error": "OutOfMemoryError: 3 GiB"})
    for text in ("| bf16 | - | failed: RuntimeError: no bf16 kernel", "| fp16 | 3 | failed: OutOfMemoryError: 2 GiB",
                 "| memory runs | fp16 | 3 | failed: OutOfMemoryError: 3 GiB"):
        assert text in printed
    assert gpu_check.targets(rows, {"precision": "fp16", "error": "x"}) == {}  # nothing judged on a failure
