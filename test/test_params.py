"""ros/params.py: the parameter table, its ROS descriptors, and config/tracker.yaml generated from it."""

from __future__ import annotations

import dataclasses
import itertools
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from hqsmem_ros.core import config
from hqsmem_ros.core.config import param, specs
from hqsmem_ros.core.factory import Settings
from hqsmem_ros.ros import params

YAML = Path(__file__).resolve().parents[1] / "config" / "tracker.yaml"
SUCCESS = TransitionCallbackReturn.SUCCESS


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


def test_advanced_settings_are_marked_in_the_readme_table_the_descriptors_and_the_yaml():
    cells = {}
    for row in params.to_markdown().splitlines()[2:]:
        name, _, _, _, advanced, _ = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        cells[name.strip("`")] = advanced
    by_name = {s.name: s for s in params.table()}
    assert {n for n, a in cells.items() if a == "yes"} == {n for n, s in by_name.items() if s.advanced}
    assert cells["cpu.flow.preset"] == "yes" and cells["cpu.threads"] == cells["memory.capacity"] == ""
    assert params.descriptor(by_name["cpu.correction.veto_logit"]).description.endswith(f"({params.ADVANCED_NOTE})")
    assert params.descriptor(by_name["cpu.motion_model"]).description == by_name["cpu.motion_model"].description
    assert "[advanced]\n        preset: " in params.to_yaml() and "[advanced]" not in params.to_yaml().split("flow:")[0]


_node_names = (f"alias_test_{i}" for i in itertools.count())


@pytest.fixture
def make_node(ros_context, tmp_path):
    """A TrackerNode (not spun) with a params file; its tracker factory records the settings it gets."""
    from hqsmem_ros.ros.node import TrackerNode
    nodes, seen = [], []

    def factory(settings):
        seen.append(settings)
        raise RuntimeError("no tracker needed")

    def make(params_yaml: str = ""):
        # a name no earlier test used: rclpy may destroy a closed node later, and a node that shares its name
        # then loses its /rosout publisher with it
        path = tmp_path / f"params{len(nodes)}.yaml"
        path.write_text("/**:\n  ros__parameters:\n" + textwrap.indent(params_yaml, "    ") + "    autostart: true\n")
        nodes.append(TrackerNode(context=ros_context, tracker_factory=factory, cli_args=[
            "--ros-args", "-r", f"__node:={next(_node_names)}", "--params-file", str(path)]))
        return nodes[-1]

    yield make, seen
    for node in nodes:
        node.close()


def test_deprecated_names_in_a_params_file_take_effect_and_are_warned_about(make_node, probe, monkeypatch):
    monkeypatch.setattr(config, "_warned", set())
    make, seen = make_node
    node = make("cpu:\n  flow_preset: fast\n  veto_logit: 2\n  correction: false\n  fg_cells: 32\n"
                "  flow_finest_scale: 3\n  flow:\n    finest_scale: 1\n")
    value = lambda name: node.get_parameter(name).value  # noqa: E731
    assert (value("cpu.flow.preset"), value("cpu.correction.veto_logit"), value("cpu.correction.enabled"),
            value("cpu.memory.fg_cells")) == ("fast", 2.0, False, 32)
    assert value("cpu.flow.finest_scale") == 1  # the new name, given too, wins
    assert not node.has_parameter("cpu.flow_preset") and not node.has_parameter("cpu.correction")
    probe.wait_log("parameter cpu.flow_preset is deprecated and goes in the next release: use cpu.flow.preset")
    assert node.trigger_configure() != SUCCESS  # the factory refuses, after receiving the settings
    cpu = seen[-1].cpu
    assert (cpu.flow.preset, cpu.correction.veto_logit, cpu.correction.enabled, cpu.memory.fg_cells,
            cpu.flow.finest_scale) == ("fast", 2.0, False, 32, 1)


def test_a_bad_value_under_a_deprecated_name_fails_configure_naming_the_new_name(make_node, probe):
    make, _ = make_node
    node = make("cpu:\n  flow_preset: warp\n")
    assert node.trigger_configure() != SUCCESS
    probe.wait_log("configure failed: parameter cpu.flow.preset: cpu.flow.preset='warp' is not one of")


def test_setting_a_deprecated_name_sets_the_new_one(make_node):
    make, _ = make_node
    node = make()
    assert node.set_parameters([Parameter("cpu.refine_below", value=0.5)])[0].successful
    assert node.get_parameter("cpu.regrowth.refine_below").value == 0.5 and not node.has_parameter("cpu.refine_below")
    refused = node.set_parameters([Parameter("cpu.refine_below", value=2.0)])[0]
    assert not refused.successful and "cpu.regrowth.refine_below" in refused.reason
    assert node.get_parameter("cpu.regrowth.refine_below").value == 0.5
