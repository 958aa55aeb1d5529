"""Parameter declarations: every field documented and ranged, overrides validated."""

import pytest

from hqsmem_ros.core.config import from_flat, specs, to_flat
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
