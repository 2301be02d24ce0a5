"""Value classes (``@valueclass``): what Backchain uses of ``dataclasses``, a quarter of the cost.

Every command line start builds the model's classes. The standard library's ``@dataclass``
costs about 0.8 ms a class (it compiles a fresh ``__init__``, ``__eq__``, ``__repr__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` each) and its import pulls in ``inspect``,
``ast`` and ``dis`` (7 ms): together 18 ms of a ``backchain commit``'s imports. Here only
``__init__`` is compiled, because it is the one that runs per instance; the other methods are
shared functions over a C-level field getter (0.2 ms a class). Semantics follow ``dataclasses``
for what the package uses: defaults and ``default_factory``, ``compare=False`` and
``repr=False`` fields, ``__post_init__``, ``frozen=True`` (hashable, assignment raises
FrozenInstanceError), and ``replace``/``fields``. tests/unit/test_valueclass.py checks each
against ``dataclasses`` on the same class bodies.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


class _Missing:
    """The marker for "no default" (a class, so that its repr reads well in errors)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen value class."""


class Field:
    """A value class field: its name, default or factory, and whether eq/hash and repr see it."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(self, default: Any, default_factory: Any, compare: bool, repr: bool) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr


@overload
def field(*, default: _T, compare: bool = True, repr: bool = True) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T], compare: bool = True, repr: bool = True) -> _T: ...
def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field with options, as ``dataclasses.field``."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("a field cannot have both a default and a default_factory")
    return Field(default, default_factory, compare, repr)


@overload
@dataclass_transform(field_specifiers=(field,))
def valueclass(cls: type[_T], /) -> type[_T]: ...
@overload
def valueclass(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...
def valueclass(cls: type[Any] | None = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a value class of its annotated fields, as ``@dataclass(frozen=...)``."""

    def build(target: type[Any]) -> type[Any]:
        return _build(target, frozen)

    return build if cls is None else build(cls)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _collect(cls: type[Any]) -> dict[str, Field]:
    """The fields, the bases' first (in MRO order, as dataclasses does), then the class's own."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        found.update(base.__dict__.get("__valueclass_fields__", {}))
    # Not inspect.get_annotations: importing inspect is the cost this module exists to avoid.
    for name, hint in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if str(hint).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(value, MISSING, True, True)
        spec.name = name
        if isinstance(value, (list, dict, set)):
            raise ValueError(f"mutable default {type(value).__name__} for field {name}: "
                             "use default_factory")  # fmt: skip
        if isinstance(value, Field):
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        found[name] = spec
    return found


def _init_source(
    cls: type[Any], found: dict[str, Field], frozen: bool
) -> tuple[str, dict[str, Any]]:
    """The source of ``__init__`` and the names it refers to."""
    names: dict[str, Any] = {"_MISSING": MISSING, "_set": object.__setattr__}
    params, lines = ["self"], []
    for spec in found.values():
        value = spec.name
        if spec.default is not MISSING:
            names[f"_default_{spec.name}"] = spec.default
            params.append(f"{spec.name}=_default_{spec.name}")
        elif spec.default_factory is not MISSING:
            names[f"_factory_{spec.name}"] = spec.default_factory
            params.append(f"{spec.name}=_MISSING")
            value = f"_factory_{spec.name}() if {spec.name} is _MISSING else {spec.name}"
        elif params[-1].count("="):
            raise TypeError(f"non-default field {spec.name!r} follows a default field "
                            f"in {cls.__qualname__}")  # fmt: skip
        else:
            params.append(spec.name)
        lines.append(f"    _set(self, {spec.name!r}, {value})" if frozen
                     else f"    self.{spec.name} = {value}")  # fmt: skip
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__({', '.join(params)}) -> None:\n" + "\n".join(lines or ["    pass"])
    return source, names


def _build(cls: type[Any], frozen: bool) -> type[Any]:
    found = _collect(cls)
    source, names = _init_source(cls, found, frozen)
    # The source is made of the class body's own annotated names, which are identifiers.
    exec(source, names)
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    compared = [name for name, spec in found.items() if spec.compare]
    key: Callable[[Any], Any] = operator.attrgetter(*compared) if compared else (lambda _self: ())
    shown = [name for name, spec in found.items() if spec.repr]

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def __hash__(self: Any) -> int:
        return hash(key(self))

    own = cls.__dict__
    for name, method in (("__init__", init), ("__eq__", __eq__), ("__repr__", __repr__)):
        if name not in own:
            setattr(cls, name, method)
    if "__hash__" not in own or own["__hash__"] is None:
        # As dataclasses: eq without frozen makes instances unhashable, frozen hashes the fields.
        cls.__hash__ = __hash__ if frozen else None  # type: ignore[assignment]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
    cls.__valueclass_fields__ = found
    cls.__match_args__ = tuple(found)  # type: ignore[misc]
    return cls


def is_valueclass(value: object) -> bool:
    """Whether ``value`` is a value class or an instance of one."""
    return hasattr(value, "__valueclass_fields__")


def fields(value: object) -> tuple[Field, ...]:
    """The fields of a value class or of an instance of one, in order."""
    try:
        found: dict[str, Field] = value.__valueclass_fields__  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"{value!r} is not a value class") from None
    return tuple(found.values())


def replace(value: _T, /, **changes: Any) -> _T:
    """A copy of ``value`` with ``changes`` applied (``__post_init__`` runs again)."""
    found = fields(value)
    unknown = set(changes) - {spec.name for spec in found}
    if unknown:
        raise TypeError(f"{type(value).__name__} has no field {sorted(unknown)[0]!r}")
    for spec in found:
        if spec.name not in changes:
            changes[spec.name] = getattr(value, spec.name)
    return value.__class__(**changes)
