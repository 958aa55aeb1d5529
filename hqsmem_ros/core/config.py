"""Parameter declarations shared by the core and the ROS node.

Every tunable of the project is a field of a dataclass declared with :func:`param`, which records a
description, a range or a set of choices, whether the value may change while the node runs, and whether
it is an advanced knob (tuned once, not a choice a user makes). The ROS node declares exactly these fields
(``ros/params.py``); ``config/tracker.yaml`` mirrors their defaults (checked by a test). One source of
truth, no hand-kept copies.

A renamed field keeps its old name for one release: a dataclass lists ``{old: new}`` (names relative to
it) in a ``DEPRECATED_NAMES`` class attribute; :func:`from_flat` and the node accept the old name and log
once that it is deprecated.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Iterator

logger = logging.getLogger("hqsmem_ros.config")
_warned: set[str] = set()  # deprecated names already warned about in this process


def param(default: Any, description: str, *, min: float | None = None, max: float | None = None,
          choices: tuple[str, ...] | None = None, dynamic: bool = False, advanced: bool = False) -> Any:
    """A dataclass field that is also a documented, range-checked parameter."""
    return field(default=default, metadata=dict(
        description=description, min=min, max=max, choices=choices, dynamic=dynamic, advanced=advanced))


@dataclass(frozen=True)
class ParamSpec:
    name: str  # dotted, e.g. "memory.capacity"
    default: Any
    description: str
    min: float | None
    max: float | None
    choices: tuple[str, ...] | None
    dynamic: bool
    advanced: bool

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None when it is."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            return f"{self.name} must be {expected.__name__}, got {type(value).__name__}"
        if expected is float and value != value:
            return f"{self.name} must be a number, got NaN"
        if self.min is not None and value < self.min:
            return f"{self.name}={value} is below the minimum {self.min}"
        if self.max is not None and value > self.max:
            return f"{self.name}={value} is above the maximum {self.max}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        return None


def specs(config: Any, prefix: str = "") -> Iterator[ParamSpec]:
    """Flatten a (nested) config dataclass instance into parameter specs, defaults = its values."""
    for f in fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from specs(value, name + ".")
            continue
        meta = f.metadata
        if "description" not in meta:
            raise TypeError(f"{name} is not declared with param()")
        yield ParamSpec(name, value, meta["description"], meta["min"], meta["max"],
                        meta["choices"], meta["dynamic"], meta["advanced"])


def deprecated_names(config: Any, prefix: str = "") -> dict[str, str]:
    """{old dotted name: new dotted name} from the ``DEPRECATED_NAMES`` of ``config`` and its nested configs."""
    names = {prefix + old: prefix + new for old, new in getattr(type(config), "DEPRECATED_NAMES", {}).items()}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            names.update(deprecated_names(value, f"{prefix}{f.name}."))
    return names


def warn_deprecated(old: str, new: str, log: Callable[[str], Any] = logger.warning) -> None:
    """Say once per process that ``old`` is deprecated (a params file read at every configure warns once)."""
    if old not in _warned:
        _warned.add(old)
        log(f"parameter {old} is deprecated and goes in the next release: use {new}")


def to_flat(config: Any) -> dict[str, Any]:
    return {spec.name: spec.default for spec in specs(config)}


def from_flat(config: Any, values: dict[str, Any]) -> Any:
    """A copy of ``config`` with dotted-name overrides applied; unknown or invalid names raise. A deprecated
    name stands for its new one (with a warning); where both are given, the new one wins, as in the node."""
    table = {spec.name: spec for spec in specs(config)}
    renamed = deprecated_names(config)
    for old in filter(renamed.__contains__, values):
        warn_deprecated(old, renamed[old])
    values = {**{renamed[n]: v for n, v in values.items() if n in renamed},
              **{n: v for n, v in values.items() if n not in renamed}}
    problems = [f"unknown parameter {name}" for name in values if name not in table]
    problems += [msg for name, value in values.items() if name in table
                 for msg in [table[name].check(value)] if msg]
    if problems:
        raise ValueError("; ".join(problems))
    return _replace(config, {n: (float(v) if isinstance(table[n].default, float) else v)
                             for n, v in values.items()})


def _replace(config: Any, values: dict[str, Any], prefix: str = "") -> Any:
    changes = {}
    for f in fields(config):
        name = f"{prefix}{f.name}"
        value = getattr(config, f.name)
        if is_dataclass(value):
            changes[f.name] = _replace(value, values, name + ".")
        elif name in values:
            changes[f.name] = values[name]
    return dataclasses.replace(config, **changes)
