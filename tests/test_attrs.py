"""kseg._attrs: the dict behind get_config and to_dict."""

from __future__ import annotations

from dataclasses import dataclass, field

from kseg._attrs import attrs_dict, dataclass_dict, init_arg_names


@dataclass
class _Result:
    score: float
    grid: tuple[float, ...]
    rows: list[int] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return max(self.grid)


def test_attrs_dict_keeps_the_order_of_the_names_and_copies_containers():
    r = _Result(0.5, (0.25, 0.75), [1, 2], {"a": 1})
    out = attrs_dict(r, ("grid", "best", "score", "rows", "extra"))
    assert list(out.items()) == [
        ("grid", [0.25, 0.75]),
        ("best", 0.75),
        ("score", 0.5),
        ("rows", [1, 2]),
        ("extra", {"a": 1}),
    ]
    out["rows"].append(3)
    out["extra"]["b"] = 2
    assert r.rows == [1, 2] and r.extra == {"a": 1}


def test_init_arg_names_skips_self_and_star_arguments():
    class Loss:
        def __init__(self, alpha: float = 0.3, beta: float = 0.7, *args, name=None, **kwargs):
            pass

    assert init_arg_names(Loss) == ["alpha", "beta", "name"]


def test_dataclass_dict_puts_first_names_first_and_leaves_out_excluded_fields():
    r = _Result(0.5, (0.25, 0.75), [1])
    out = dataclass_dict(r, first=("best", "rows"), exclude=("extra",))
    assert list(out.items()) == [
        ("best", 0.75),
        ("rows", [1]),
        ("score", 0.5),
        ("grid", [0.25, 0.75]),
    ]
