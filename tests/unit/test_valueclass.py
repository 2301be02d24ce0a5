"""@valueclass against the standard library's @dataclass, on the same class bodies."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchain.core import valueclass
from backchain.core.model import CommitPlan, CommitRequest
from backchain.core.valueclass import field, replace


def pair(frozen: bool) -> tuple[Any, Any]:
    """The same class, once made by each decorator: positional, defaulted, factory, hidden."""

    def body() -> type:
        class Sample:
            """A sample."""

            name: str
            size: int
            tags: tuple[str, ...] = ()
            items: list[int] = field(default_factory=list)  # type: ignore[assignment]
            note: str = field(default="", compare=False, repr=False)  # type: ignore[assignment]

        return Sample

    ours = valueclass.valueclass(frozen=frozen)(body())
    theirs_body = body()
    # The stdlib decorator reads its own field() specifiers: rebuild the two special fields.
    theirs_body.items = dataclasses.field(default_factory=list)  # type: ignore[attr-defined]
    theirs_body.note = dataclasses.field(default="", compare=False, repr=False)  # type: ignore[attr-defined]
    theirs = dataclasses.dataclass(frozen=frozen)(theirs_body)
    return ours, theirs


values = st.tuples(
    st.text(max_size=5),
    st.integers(-3, 3),
    st.lists(st.sampled_from("abc"), max_size=3).map(tuple),
    st.lists(st.integers(0, 3), max_size=3),
    st.text(max_size=3),
)


@given(st.booleans(), values, values)
def test_init_eq_hash_and_repr_match_dataclasses(frozen: bool, one: tuple, two: tuple) -> None:
    ours, theirs = pair(frozen)
    a, b = ours(*one), ours(*two)
    x, y = theirs(*one), theirs(*two)
    assert (a == b) == (x == y)
    assert (a != b) == (x != y)
    assert repr(a).replace("Sample", "S") == repr(x).replace("Sample", "S")
    assert [getattr(a, f.name) for f in valueclass.fields(a)] == [
        getattr(x, f.name) for f in dataclasses.fields(x)
    ]
    if frozen:  # the list field makes both unhashable, as a tuple holding a list is
        for obj in (a, x):
            with pytest.raises(TypeError):
                hash(obj)
    assert ours.__match_args__ == theirs.__match_args__


@given(values, values)
def test_equal_frozen_values_hash_equal_and_compare_false_fields_are_left_out(
    one: tuple, two: tuple
) -> None:
    @valueclass.valueclass(frozen=True)
    class Key:
        """Hashable fields only."""

        name: str
        size: int
        note: str = field(default="", compare=False)

    assert hash(Key(one[0], one[1], one[4])) == hash(Key(one[0], one[1], two[4]))
    assert Key(one[0], one[1], one[4]) == Key(one[0], one[1], two[4])
    assert (Key(one[0], one[1]) == Key(two[0], two[1])) == ((one[0], one[1]) == (two[0], two[1]))
    ours, _ = pair(True)
    assert ours("a", 1, note="x") == ours("a", 1, note="y")
    assert "note" not in repr(ours("a", 1, note="x"))


def test_each_instance_gets_its_own_factory_value() -> None:
    ours, _ = pair(False)
    first, second = ours("a", 1), ours("b", 2)
    first.items.append(1)
    assert second.items == []


def test_frozen_instances_refuse_assignment_and_deletion_as_dataclasses_do() -> None:
    ours, theirs = pair(True)
    for obj, error in ((ours("a", 1), valueclass.FrozenInstanceError),
                       (theirs("a", 1), dataclasses.FrozenInstanceError)):  # fmt: skip
        with pytest.raises(error):
            obj.size = 2
        with pytest.raises(error):
            del obj.size
        assert isinstance(error(), AttributeError)


def test_a_mutable_value_class_is_unhashable_and_assignable_like_a_dataclass() -> None:
    ours, theirs = pair(False)
    for cls in (ours, theirs):
        obj = cls("a", 1)
        obj.size = 5
        assert obj.size == 5
        with pytest.raises(TypeError):
            hash(obj)


def test_post_init_runs_on_creation_and_on_replace() -> None:
    @valueclass.valueclass(frozen=True)
    class Checked:
        """Refuses a negative size."""

        size: int

        def __post_init__(self) -> None:
            if self.size < 0:
                raise ValueError("negative")

    assert replace(Checked(1), size=2) == Checked(2)
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    with pytest.raises(ValueError, match="negative"):
        replace(Checked(1), size=-1)


def test_replace_keeps_the_other_fields_and_refuses_unknown_ones() -> None:
    ours, _ = pair(True)
    obj = ours("a", 1, ("t",), note="kept")
    changed = replace(obj, size=9)
    assert (changed.name, changed.size, changed.tags, changed.note) == ("a", 9, ("t",), "kept")
    with pytest.raises(TypeError, match="no field 'sizes'"):
        replace(obj, sizes=9)
    with pytest.raises(TypeError, match="not a value class"):
        replace(object())


def test_badly_ordered_or_mutable_defaults_are_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="follows a default"):

        @valueclass.valueclass
        class Misordered:
            """A required field after a defaulted one."""

            first: int = 0
            second: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="default_factory"):

        @valueclass.valueclass
        class Shared:
            """One list for every instance would be shared."""

            items: list[int] = []  # noqa: RUF012


def test_fields_of_the_model_are_its_annotations_in_order() -> None:
    for cls in (CommitRequest, CommitPlan):
        assert [f.name for f in valueclass.fields(cls)] == list(cls.__annotations__)
        assert valueclass.is_valueclass(cls)
    assert not valueclass.is_valueclass(object())


def test_classes_of_one_shape_share_compiled_code_but_keep_their_own_names() -> None:
    """The second class of a shape takes the first's code renamed: its keywords, its errors and
    its fields are its own, even where a field is named like the template's placeholders."""

    @valueclass.valueclass(frozen=True)
    class First:
        path: str
        size: int = 0

    @valueclass.valueclass(frozen=True)
    class Second:
        _p0: str
        _set: int = 7

    assert First.__init__.__code__.co_code == Second.__init__.__code__.co_code
    assert Second(_set=3, _p0="x") == Second("x", 3)
    assert (Second("x")._p0, Second("x")._set) == ("x", 7)
    assert (First(size=2, path="a").path, First("a").size) == ("a", 0)
    with pytest.raises(TypeError, match="'_p0'"):
        Second()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="path"):
        First(size=1)  # type: ignore[call-arg]
    assert Second.__init__.__qualname__.endswith("Second.__init__")
    with pytest.raises(TypeError, match="named 'self'"):

        @valueclass.valueclass
        class Selfish:
            self: int
