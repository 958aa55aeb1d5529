"""The node's parameters: one table, built from the config dataclasses, mirrored by config/tracker.yaml.

The table is the node's own settings (``NodeConfig``, top-level names such as ``compressed``) followed by
every field of ``core.factory.Settings`` flattened with dots (``backend``, ``tracker.min_area``,
``cpu.*``, ``hqsmem.*`` ...). Fields added to any of those dataclasses appear here, in the ROS
declarations and in the YAML with no edit to this file. ``DEPRECATED`` holds the old names that a
params file, the command line or ``ros2 param set`` may still use for one release.

    python -m hqsmem_ros.ros.params --yaml > config/tracker.yaml
    python -m hqsmem_ros.ros.params --markdown    # the README's table
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..core.config import ParamSpec, deprecated_names, from_flat, param, specs
from ..core.factory import Settings
from ..core.tracker import HQSMemConfig

NODE_NAME = "hqsmem_tracker"
# The params-file key: "/**/" matches the node in any namespace (a bare "hqsmem_tracker:" only matches
# the root namespace, so the launch file's namespace argument would silently drop the file).
YAML_NODE_KEY = f"/**/{NODE_NAME}"
LABEL_ENCODINGS = ("mono16", "mono8")


@dataclass(frozen=True)
class OverlayConfig:
    alpha: float = param(0.5, "Opacity of the object colours on tracks/overlay", min=0.0, max=1.0, dynamic=True)
    draw_boxes: bool = param(True, "Draw each present object's box on tracks/overlay", dynamic=True)
    draw_labels: bool = param(True, "Write each present object's id and label on tracks/overlay", dynamic=True)


@dataclass(frozen=True)
class NodeConfig:
    autostart: bool = param(True, "Configure and activate on start; false when a lifecycle manager drives the node")
    compressed: bool = param(False, "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image")
    label_encoding: str = param("mono16", "Encoding of tracks/label_image (pixel = object id); mono8 limits ids "
                                "to 1..255", choices=LABEL_ENCODINGS)
    frame_ring_size: int = param(8, "Recent frames taken from the image subscription, held so that a TargetArray "
                                 "stamped with one of them is checked against that frame's size (and starts on "
                                 "it if it is not processed yet)", min=1, max=256)
    max_image_pixels: int = param(4096 * 2160, "Largest image accepted, in pixels (width x height; default: 4K), "
                                  "checked from the message or the compressed header before decoding",
                                  min=1, max=100_000_000, dynamic=True)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)


def image_qos_override(policy: str, value, topic: str = "/image") -> str:
    """A ``--ros-args -p`` item that sets one QoS policy of the image subscription through rclpy's standard
    QoS overrides (``topic``: the resolved name, after remapping; ``/image/compressed`` when compressed)."""
    return f"qos_overrides.{topic}.subscription.{policy}:={value}"


# Parameters that only mean something when the process starts.
READ_ONLY = frozenset({"autostart"})
_NODE_FIELDS = frozenset(f.name for f in fields(NodeConfig))
_CORE_SECTIONS = frozenset(f.name for f in fields(HQSMemConfig))
# {old name: new name}; the node takes a value given under an old name as the new one's.
DEPRECATED = deprecated_names(Settings())
ADVANCED_NOTE = "advanced: tuned once, rarely worth changing"


def table() -> list[ParamSpec]:
    """Every parameter of the node, node settings first, in declaration order."""
    out = list(specs(NodeConfig())) + list(specs(Settings()))
    names = [s.name for s in out]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise TypeError(f"parameter names declared twice: {', '.join(sorted(clashes))}")
    return out


def applies_at_run_time(spec: ParamSpec) -> bool:
    """Declared dynamic and reachable by a running node: its own settings and the core sections that
    ``HQSMemTracker.configure`` takes (a backend section has no run-time hook, so it waits for configure)."""
    section = spec.name.split(".")[0]
    return spec.dynamic and (section in _NODE_FIELDS or section in _CORE_SECTIONS)


def split(values: dict[str, Any]) -> tuple[NodeConfig, Settings]:
    """The two config objects for flat parameter values; raises ValueError naming every bad value."""
    node_names = {s.name for s in specs(NodeConfig())}
    problems = []
    try:
        node = from_flat(NodeConfig(), {k: v for k, v in values.items() if k in node_names})
    except ValueError as exc:
        problems.append(str(exc))
        node = NodeConfig()
    try:
        settings = from_flat(Settings(), {k: v for k, v in values.items() if k not in node_names})
    except ValueError as exc:
        problems.append(str(exc))
        settings = Settings()
    if problems:
        raise ValueError("; ".join(problems))
    return node, settings


def descriptor(spec: ParamSpec):
    """The rcl_interfaces ParameterDescriptor for ``spec`` (ranges, choices, read-only)."""
    # Imported here: the table and --yaml also work in the ROS-free pip install.
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    kind = type(spec.default)
    description = f"{spec.description} ({ADVANCED_NOTE})" if spec.advanced else spec.description
    d = ParameterDescriptor(name=spec.name, type=types[kind], description=description,
                            read_only=spec.name in READ_ONLY)
    if spec.min is not None or spec.max is not None:
        if kind is int:
            lo = int(spec.min) if spec.min is not None else -2**63
            hi = int(spec.max) if spec.max is not None else 2**63 - 1
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
        elif kind is float:
            big = sys.float_info.max
            d.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min) if spec.min is not None else -big,
                to_value=float(spec.max) if spec.max is not None else big, step=0.0)]
    notes = []
    if spec.choices:
        notes.append("one of: " + ", ".join(spec.choices))
    notes.append("changes at run time" if applies_at_run_time(spec) else
                 "fixed while configured (cleanup, set, configure)" if spec.name not in READ_ONLY else
                 "read at start only")
    d.additional_constraints = "; ".join(notes)
    return d


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Positional with a dot: both PyYAML and rcl's parser read it as a double (not '1e-05' or '1').
        return np.format_float_positional(value, trim="0")
    return json.dumps(value)  # a double-quoted YAML string


def to_yaml(spec_table: list[ParamSpec] | None = None) -> str:
    """config/tracker.yaml: the defaults under ``/**/hqsmem_tracker: ros__parameters:``, nested by dots,
    each preceded by its description."""
    lines = ["# Generated from the parameter table by `python -m hqsmem_ros.ros.params --yaml`;",
             "# regenerate instead of editing by hand (test/test_params.py checks it).",
             f"{YAML_NODE_KEY}:", "  ros__parameters:"]
    open_sections: list[str] = []
    for spec in spec_table if spec_table is not None else table():
        *sections, leaf = spec.name.split(".")
        common = 0
        while common < min(len(sections), len(open_sections)) and sections[common] == open_sections[common]:
            common += 1
        for depth in range(common, len(sections)):
            lines.append("    " + "  " * depth + sections[depth] + ":")
        open_sections = sections
        indent = "    " + "  " * len(sections)
        extra = f" [one of: {', '.join(spec.choices)}]" if spec.choices else ""
        extra += " [advanced]" if spec.advanced else ""
        lines.append(f"{indent}# {spec.description}{extra}")
        lines.append(f"{indent}{leaf}: {_yaml_scalar(spec.default)}")
    return "\n".join(lines) + "\n"


def to_markdown(spec_table: list[ParamSpec] | None = None) -> str:
    """The README's parameter table: name, default, range or choices, when it applies, whether it is
    advanced, description."""
    rows = ["| parameter | default | range | changes | advanced | description |", "|---|---|---|---|---|---|"]
    for spec in spec_table if spec_table is not None else table():
        if spec.choices:
            allowed = " \\| ".join(spec.choices)
        elif spec.min is not None or spec.max is not None:
            lo, hi = ("" if v is None else _yaml_scalar(v) for v in (spec.min, spec.max))
            allowed = f"{lo}..{hi}"
        else:
            allowed = ""
        when = "run time" if applies_at_run_time(spec) else "start" if spec.name in READ_ONLY else "configure"
        advanced = "yes" if spec.advanced else ""
        rows.append(f"| `{spec.name}` | `{_yaml_scalar(spec.default)}` | {allowed} | {when} | {advanced} "
                    f"| {spec.description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", action="store_true", help="print config/tracker.yaml")
    parser.add_argument("--markdown", action="store_true", help="print the README's parameter table")
    args = parser.parse_args(argv)
    if args.yaml:
        sys.stdout.write(to_yaml())
    elif args.markdown:
        sys.stdout.write(to_markdown())
    else:
        for spec in table():
            print(f"{spec.name} = {spec.default!r}: {spec.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
