"""The node's standard ROS 2 interfaces, driven from another process over DDS the way `ros2 lifecycle`,
`ros2 param` and a lifecycle manager drive them: the lifecycle services (GetState, ChangeState) through
every transition with the graph checked at each state, and the parameter services (List, Describe,
Get, Set). Nothing here calls a method of the node object."""

from __future__ import annotations

import signal

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters

from dds_helpers import wait_until
from hqsmem_ros.core.sequences import make_sequence

NODE = "/hqsmem_tracker"
NS = 1_000_000_000
SIZE = (96, 128)
CPU = ("backend:=cpu", "cpu.work_short_side:=96", "qos_overrides./image.subscription.reliability:=reliable")
PARAMETER_SERVICES = {f"{NODE}/{s}" for s in ("describe_parameters", "get_parameter_types", "get_parameters",
                                              "list_parameters", "set_parameters", "set_parameters_atomically")}
LIFECYCLE_SERVICES = {f"{NODE}/{s}" for s in ("change_state", "get_state", "get_available_states",
                                              "get_available_transitions", "get_transition_graph")}
TRACKER_SERVICES = {"/add_targets", "/remove_targets", "/reset"}  # in the node's namespace
INPUTS = {"/image", "/targets"}


def graph(probe) -> tuple[set[str], set[str]]:
    """(services, subscribed topics) of the tracker node, as the ROS graph shows them (empty before it is seen)."""
    if ("hqsmem_tracker", "/") not in probe.node.get_node_names_and_namespaces():
        return set(), set()
    services = {name for name, _ in probe.node.get_service_names_and_types_by_node("hqsmem_tracker", "/")}
    topics = {name for name, _ in probe.node.get_subscriber_names_and_types_by_node("hqsmem_tracker", "/")}
    return services, topics


def expect_graph(probe, services_present: set[str], services_absent: set[str], inputs: bool) -> None:
    def matches():
        services, topics = graph(probe)
        return (services_present <= services and not services & services_absent
                and (INPUTS <= topics if inputs else not topics & INPUTS))
    wait_until(matches, 10, f"the graph (services {sorted(services_present)}, inputs {inputs}): now {graph(probe)}")


def state(probe) -> str:
    return probe.call(GetState, f"{NODE}/get_state", GetState.Request(), timeout=5).current_state.label


def change(probe, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return probe.call(ChangeState, f"{NODE}/change_state", request, timeout=60).success


def test_every_lifecycle_transition_from_another_process_with_the_graph_at_each_state(node_process, probe):
    node = node_process(*CPU, "autostart:=false")
    wait_until(lambda: f"{NODE}/get_state" in graph(probe)[0], 60, "the lifecycle services")
    assert state(probe) == "unconfigured"
    expect_graph(probe, LIFECYCLE_SERVICES | PARAMETER_SERVICES, TRACKER_SERVICES, inputs=False)

    steps = [  # transition, state after it, tracker services, inputs subscribed
        (Transition.TRANSITION_CONFIGURE, "inactive", True, False),
        (Transition.TRANSITION_ACTIVATE, "active", True, True),
        (Transition.TRANSITION_DEACTIVATE, "inactive", True, False),
        (Transition.TRANSITION_ACTIVATE, "active", True, True),
        (Transition.TRANSITION_DEACTIVATE, "inactive", True, False),
        (Transition.TRANSITION_CLEANUP, "unconfigured", False, False),
        (Transition.TRANSITION_CONFIGURE, "inactive", True, False),
        (Transition.TRANSITION_ACTIVATE, "active", True, True),
    ]
    for transition, label, tracker_services, inputs in steps:
        assert change(probe, transition), (transition, node.stderr)
        assert state(probe) == label
        # the lifecycle and parameter services stay in every state; the node's own ones only while configured
        present = LIFECYCLE_SERVICES | PARAMETER_SERVICES | (TRACKER_SERVICES if tracker_services else set())
        expect_graph(probe, present, set() if tracker_services else TRACKER_SERVICES, inputs)
        values = probe.call(GetParameters, f"{NODE}/get_parameters",
                            GetParameters.Request(names=["memory.capacity"]), timeout=5).values
        assert values[0].integer_value == 6

    assert change(probe, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert state(probe) == "finalized"
    expect_graph(probe, LIFECYCLE_SERVICES, TRACKER_SERVICES, inputs=False)
    assert node.stop(signal.SIGINT) == 0
    assert "Traceback" not in node.stderr, node.stderr


def test_a_failed_configure_leaves_the_node_unconfigured_and_answering(node_process, probe):
    node = node_process(*CPU, "autostart:=false", "hqsmem.model:=deaotl", "backend:=hqsmem",
                        "hqsmem.weights_dir:=/nonexistent")
    wait_until(lambda: f"{NODE}/get_state" in graph(probe)[0], 60, "the lifecycle services")
    assert not change(probe, Transition.TRANSITION_CONFIGURE)
    assert state(probe) == "unconfigured"
    assert set_parameters(probe, backend="cpu")[0].successful  # unconfigured: every parameter may change
    assert change(probe, Transition.TRANSITION_CONFIGURE) and state(probe) == "inactive"
    assert node.stop(signal.SIGINT) == 0


def set_parameters(probe, **values):
    def value(v):
        if isinstance(v, bool):
            return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
        if isinstance(v, int):
            return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
        if isinstance(v, float):
            return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)
    request = SetParameters.Request(parameters=[Parameter(name=k.replace("__", "."), value=value(v))
                                                for k, v in values.items()])
    return probe.call(SetParameters, f"{NODE}/set_parameters", request, timeout=10).results


@pytest.mark.timeout(180)
def test_parameter_services_list_describe_get_and_set_with_effect_and_refusal(node_process, probe):
    seq = make_sequence("translation", n_frames=6, size=SIZE, n_objects=1)
    node = node_process(*CPU)  # autostart: configured and active
    probe.connect(timeout=60)

    names = probe.call(ListParameters, f"{NODE}/list_parameters", ListParameters.Request(), timeout=10).result.names
    assert {"backend", "memory.capacity", "tracker.min_area", "cpu.work_short_side",
            "qos_overrides./image.subscription.reliability", "qos_overrides./image.subscription.depth"} <= set(names)

    described = probe.call(DescribeParameters, f"{NODE}/describe_parameters",
                           DescribeParameters.Request(names=["memory.capacity", "backend"]), timeout=10).descriptors
    capacity, backend = described
    assert "K: most non-pinned key frames held" in capacity.description
    assert (capacity.integer_range[0].from_value, capacity.integer_range[0].to_value) == (1, 256)
    assert "one of: auto, cpu, hqsmem" in backend.additional_constraints

    got = probe.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(
        names=["backend", "qos_overrides./image.subscription.reliability"]), timeout=10).values
    assert [got[0].string_value, got[1].string_value] == ["cpu", "reliable"]

    # a run-time parameter applies to the running tracker
    probe.send_targets(seq.targets(), 0)

    def track(i):
        expected = len(probe.tracks) + 1
        probe.publish_frame(seq.frame(i)[0], (i + 1) * NS)
        return probe.wait_tracks(expected, timeout=30)[-1]

    assert track(0).objects[0].present and track(1).objects[0].present
    results = set_parameters(probe, tracker__min_area=1_000_000, memory__capacity=4)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert not track(2).objects[0].present  # every mask is now below min_area
    assert set_parameters(probe, tracker__min_area=16)[0].successful
    assert track(3).objects[0].present
    got = probe.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=["memory.capacity"]),
                     timeout=10).values
    assert got[0].integer_value == 4

    # configure-time and invalid values are refused with their reason, and change nothing
    refused = set_parameters(probe, backend="hqsmem")[0]
    assert not refused.successful and "cannot change while the node is configured" in refused.reason
    invalid = set_parameters(probe, memory__capacity=0)[0]
    assert not invalid.successful and "memory.capacity out of range. Min: 1, Max: 256" in invalid.reason
    read_only = set_parameters(probe, **{"qos_overrides./image.subscription.reliability": "best_effort"})[0]
    assert not read_only.successful
    got = probe.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(
        names=["backend", "memory.capacity"]), timeout=10).values
    assert (got[0].string_value, got[1].integer_value) == ("cpu", 4)
    assert node.stop(signal.SIGINT) == 0
    assert "Traceback" not in node.stderr, node.stderr
