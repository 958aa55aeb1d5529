"""ros/params.py: the parameter table, its ROS descriptors, and config/tracker.yaml generated from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from hqsmem_ros.core.config import param, specs
from hqsmem_ros.core.factory import Settings
from hqsmem_ros.ros import params

YAML = Path(__file__).resolve().parents[1] / "config" / "tracker.yaml"


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_is_generated_from_the_table():
    assert YAML.read_text() == params.to_yaml(), (
        "config/tracker.yaml is out of date: run `python -m hqsmem_ros.ros.params --yaml > config/tracker.yaml`")


def test_config_yaml_holds_every_parameter_with_its_default_and_type():
    tree = yaml.safe_load(YAML.read_text())
    values = flatten(tree[params.YAML_NODE_KEY]["ros__parameters"])
    table = {s.name: s.default for s in params.table()}
    assert values == table
    assert all(type(values[k]) is type(v) for k, v in table.items())


def test_table_covers_the_node_settings_and_every_settings_field():
    names = [s.name for s in params.table()]
    assert {"autostart", "compressed", "label_encoding", "frame_ring_size", "tracker.fault_limit",
            "overlay.alpha"} <= set(names)
    assert [s.name for s in specs(Settings())] == names[-len(list(specs(Settings()))):]
    assert {"backend", "tracker.min_area", "memory.capacity", "cpu.threads", "hqsmem.device"} <= set(names)


def test_yaml_nests_sections_and_writes_floats_that_rcl_reads_as_doubles():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        tiny: float = param(1e-05, "small", min=0.0)
        whole: float = param(2.0, "whole")

    @dataclasses.dataclass(frozen=True)
    class Outer:
        name: str = param('say "hi"', "quoted")
        inner: Inner = dataclasses.field(default_factory=Inner)
        flag: bool = param(False, "after a section")

    text = params.to_yaml(list(specs(Outer())))
    assert "tiny: 0.00001\n" in text and "whole: 2.0\n" in text
    assert flatten(yaml.safe_load(text)[params.YAML_NODE_KEY]["ros__parameters"]) == {
        "name": 'say "hi"', "inner.tiny": 1e-05, "inner.whole": 2.0, "flag": False}


def test_descriptors_carry_type_range_choices_and_read_only():
    by_name = {s.name: params.descriptor(s) for s in params.table()}
    capacity = by_name["memory.capacity"]
    assert capacity.type == ParameterType.PARAMETER_INTEGER and capacity.description
    assert (capacity.integer_range[0].from_value, capacity.integer_range[0].to_value) == (1, 256)
    alpha = by_name["overlay.alpha"]
    assert alpha.type == ParameterType.PARAMETER_DOUBLE
    assert (alpha.floating_point_range[0].from_value, alpha.floating_point_range[0].to_value) == (0.0, 1.0)
    assert "one of: mono16, mono8" in by_name["label_encoding"].additional_constraints
    assert "one of: auto, cpu, hqsmem" in by_name["backend"].additional_constraints
    assert by_name["autostart"].read_only and not by_name["backend"].read_only
    assert "changes at run time" in by_name["tracker.min_area"].additional_constraints
    assert "fixed while configured" in by_name["backend"].additional_constraints
    assert by_name["compressed"].type == ParameterType.PARAMETER_BOOL
    assert by_name["hqsmem.device"].type == ParameterType.PARAMETER_STRING


def test_split_builds_both_configs_and_names_every_bad_value():
    node, settings = params.split({"compressed": True, "memory.capacity": 3, "overlay.alpha": 1})
    assert node.compressed and node.overlay.alpha == 1.0 and settings.memory.capacity == 3
    with pytest.raises(ValueError) as err:
        params.split({"label_encoding": "rgb8", "memory.capacity": 0, "tracker.min_area": "x"})
    text = str(err.value)
    assert "label_encoding='rgb8' is not one of mono16, mono8" in text
    assert "memory.capacity=0 is below the minimum 1" in text and "tracker.min_area must be int" in text


def test_only_dynamic_fields_that_a_running_node_can_apply_change_at_run_time():
    runtime = {s.name for s in params.table() if params.applies_at_run_time(s)}
    assert {"tracker.min_area", "memory.capacity", "refiner.enabled", "overlay.alpha", "tracker.fault_limit"} <= runtime
    assert not runtime & {"backend", "compressed", "label_encoding", "autostart",
                          "tracker.max_objects", "cpu.threads"}
    assert all(not n.startswith(("cpu.", "hqsmem.")) for n in runtime)


def test_params_module_prints_the_yaml(capsys):
    assert params.main(["--yaml"]) == 0
    assert capsys.readouterr().out == YAML.read_text()


def test_readme_documents_every_parameter_as_the_table_says():
    readme = (YAML.parents[1] / "README.md").read_text()
    assert params.to_markdown() in readme, (
        "README.md's parameter table is out of date: paste `python -m hqsmem_ros.ros.params --markdown`")
