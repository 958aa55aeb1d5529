"""Parameter declarations: every field documented and ranged, overrides validated."""

import logging

import pytest

from hqsmem_ros.core import config
from hqsmem_ros.core.backends.cpu import CpuBackendConfig
from hqsmem_ros.core.config import deprecated_names, from_flat, specs, to_flat
from hqsmem_ros.core.factory import Settings


def test_every_parameter_has_a_description_and_a_valid_default():
    for spec in specs(Settings()):
        assert len(spec.description) > 10, spec.name
        assert spec.check(spec.default) is None, spec.name
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert spec.min is not None and spec.max is not None, f"{spec.name} has no range"


def test_overrides_apply_by_dotted_name():
    s = from_flat(Settings(), {"memory.capacity": 12, "tracker.presence_threshold": 1, "backend": "cpu"})
    assert s.memory.capacity == 12 and s.tracker.presence_threshold == 1.0 and s.backend == "cpu"
    assert s.core.memory.capacity == 12
    assert to_flat(s)["memory.capacity"] == 12


@pytest.mark.parametrize("values,message", [
    ({"memory.capacity": 0}, "below the minimum"),
    ({"memory.capacity": 1.5}, "must be int"),
    ({"memory.relevance_threshold": float("nan")}, "NaN"),
    ({"memory.policy": "lru"}, "not one of"),
    ({"backend": "tpu"}, "not one of"),
    ({"memory.nope": 1}, "unknown parameter"),
])
def test_bad_values_are_refused_with_the_reason(values, message):
    with pytest.raises(ValueError, match=message):
        from_flat(Settings(), values)


# The previous release's flat CPU settings and their defaults, as that release declared them (but threads:
# 2 then, 0 = auto now, deliberately).
FLAT_CPU_DEFAULTS = dict(
    threads=0, work_short_side=288, flow=True, flow_preset="ultrafast", flow_finest_scale=0, motion_model="similarity",
    correction=True, veto_logit=3.0, veto_logit_partial=6.0, adopt_logit=4.0, regrow_below=0.7, color_vote=0.5,
    color_band=0.5, refine_below=0.9, refine_accept=0.8, fragment_below=0.15, search_margin=0.5, top_k=3,
    novel_similarity=0.4, temperature=0.05, redetect=True, redetect_similarity=0.6, redetect_min_size=0.25,
    fg_cells=64, bg_cells=128)
ADDED_SINCE_FLAT = {"correction.size_window"}  # new settings have only their nested name


def test_the_nested_cpu_settings_keep_every_flat_setting_and_its_default():
    renamed = {**{n: n for n in ("threads", "work_short_side", "motion_model", "redetect")},
               **CpuBackendConfig.DEPRECATED_NAMES}
    assert set(renamed) == set(FLAT_CPU_DEFAULTS)
    nested = {k: v for k, v in to_flat(CpuBackendConfig()).items() if k not in ADDED_SINCE_FLAT}
    assert {renamed[old]: v for old, v in FLAT_CPU_DEFAULTS.items()} == nested
    assert from_flat(CpuBackendConfig(), FLAT_CPU_DEFAULTS) == CpuBackendConfig()


@pytest.mark.parametrize("old", sorted(CpuBackendConfig.DEPRECATED_NAMES))
def test_a_deprecated_flat_name_sets_its_nested_field_and_only_that(old):
    new = CpuBackendConfig.DEPRECATED_NAMES[old]
    spec = {s.name: s for s in specs(CpuBackendConfig())}[new]
    value = (not spec.default if isinstance(spec.default, bool) else
             next(c for c in spec.choices if c != spec.default) if spec.choices else
             type(spec.default)(spec.max))
    via_old, via_new = from_flat(Settings(), {f"cpu.{old}": value}), from_flat(Settings(), {f"cpu.{new}": value})
    assert via_old == via_new
    changed = {k for k, v in to_flat(via_old).items() if v != to_flat(Settings())[k]}
    assert changed == {f"cpu.{new}"}


def test_a_deprecated_name_warns_once_and_the_new_name_wins_when_both_are_given(monkeypatch, caplog):
    monkeypatch.setattr(config, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="hqsmem_ros.config"):
        s = from_flat(Settings(), {"cpu.flow_preset": "fast", "cpu.flow.preset": "medium", "cpu.veto_logit": 2})
        from_flat(Settings(), {"cpu.flow_preset": "fast"})
    assert s.cpu.flow.preset == "medium" and s.cpu.correction.veto_logit == 2.0
    assert [r.getMessage() for r in caplog.records] == [
        "parameter cpu.flow_preset is deprecated and goes in the next release: use cpu.flow.preset",
        "parameter cpu.veto_logit is deprecated and goes in the next release: use cpu.correction.veto_logit"]
    with pytest.raises(ValueError, match="cpu.correction.veto_logit=-1.0 is below the minimum"):
        from_flat(Settings(), {"cpu.veto_logit": -1.0})  # checked as the new name


def test_deprecated_names_point_at_parameters_and_shadow_none():
    names = {s.name for s in specs(Settings())}
    renamed = deprecated_names(Settings())
    assert renamed and set(renamed.values()) <= names and not set(renamed) & names


def test_the_user_choices_are_top_level_cpu_settings_and_every_stage_setting_is_advanced():
    cpu = list(specs(CpuBackendConfig()))
    assert {s.name for s in cpu if not s.advanced} == {"threads", "work_short_side", "motion_model", "redetect"}
    assert all(s.advanced == ("." in s.name) for s in cpu)
    assert {s.name.split(".")[0] for s in cpu if s.advanced} == {
        "flow", "correction", "boundary", "regrowth", "redetection", "memory"}
    assert not any(s.advanced for s in specs(Settings()) if not s.name.startswith("cpu."))
