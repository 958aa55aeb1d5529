"""tools/soak.py: the slope and verdict on synthetic samples, and short real runs of both modes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hqsmem_ros.tools.soak import Monitor, Sample, churn, resources, slope_per_1000

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^frames=(\d+) rss_mib=[\d.]+ memory_frames=(\d+) fds=(\d+) threads=(\d+) fps=[\d.]+$", re.M)


def test_slope_is_zero_when_flat_and_the_line_slope_when_linear():
    frames = list(range(0, 50_001, 1000))
    assert slope_per_1000(frames, [500_000] * len(frames)) == pytest.approx(0, abs=1e-6)
    assert slope_per_1000(frames, [2.5 * f + 100 for f in frames]) == pytest.approx(2500)
    noise = np.random.default_rng(0).normal(0, 50, len(frames))
    assert abs(slope_per_1000(frames, 400_000 + noise)) < 5
    assert slope_per_1000([1000], [5]) == 0.0


def monitor_with(rss, fds=None) -> Monitor:
    m = Monitor("self", 1000)
    m.samples = [Sample(1000 * (i + 1), r, 5, (fds or [7] * len(rss))[i], 4, 30.0) for i, r in enumerate(rss)]
    return m


def test_the_verdict_ignores_warm_up_and_catches_growth_and_leaking_descriptors(capsys):
    assert monitor_with([100_000, 200_000, 300_000, 300_010, 300_000, 300_010]).verdict(64)  # warm-up only
    assert not monitor_with([300_000 + 100 * i for i in range(6)]).verdict(64)  # 100 KiB per 1000 frames
    assert not monitor_with([300_000] * 6, fds=[7, 7, 7, 7, 8, 9]).verdict(64)
    out = capsys.readouterr().out
    assert "rss_slope_kib_per_1000=+100.0" in out and "verdict: GROWTH" in out and "verdict: FLAT" in out


def test_churn_removes_an_object_every_period_and_re_adds_it_once_in_sight():
    removed, events = False, []
    for n in range(1500):
        action = churn(n, removed, visible=n % 400 < 300)
        if action:
            events.append((n, action))
            removed = action == "remove"
    assert events == [(500, "remove"), (800, "add"), (1000, "remove"), (1250, "add")]


def test_resources_reads_this_process():
    rss, fds, threads = resources()
    assert rss > 10_000 and fds >= 3 and threads >= 1


@pytest.mark.parametrize("mode, frames", [("core", 300), ("node", 60)])
def test_a_short_soak_run_prints_every_field_and_a_verdict(mode, frames):
    run = subprocess.run([sys.executable, "-m", "hqsmem_ros.tools.soak", mode, "--frames", str(frames),
                          "--every", str(frames // 6), "--size", "96x128"],
                         cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=180)
    samples = LINE.findall(run.stdout)
    assert [int(s[0]) for s in samples] == list(range(frames // 6, frames + 1, frames // 6)), run.stdout + run.stderr
    assert all(int(s[1]) >= 1 and int(s[2]) >= 3 and int(s[3]) >= 1 for s in samples)
    assert re.search(r"rss_slope_kib_per_1000=[+-]\d+\.\d over frames \d+\.\.\d+", run.stdout)
    assert re.search(r"verdict: (FLAT|GROWTH)", run.stdout) and run.returncode in (0, 1)
    if mode == "node":
        assert "frames without a tracks message within 10 s: 0" in run.stdout
        assert "node exit on SIGINT: rc=0, clean" in run.stdout
