"""Value classes (``@valueclass``): what Backchain uses of ``dataclasses``, a quarter of the cost.

Every command line start builds the model's classes. The standard library's ``@dataclass``
costs about 0.8 ms a class (it compiles a fresh ``__init__``, ``__eq__``, ``__repr__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` each) and its import pulls in ``inspect``,
``ast`` and ``dis`` (7 ms): together 18 ms of a ``backchain commit``'s imports. Here only
``__init__`` is compiled, because it is the one that runs per instance, and only once for each
shape of class (see ``_shape_code``); the other methods are shared functions over a C-level
field getter. Semantics follow ``dataclasses``
for what the package uses: defaults and ``default_factory``, ``compare=False`` and
``repr=False`` fields, ``__post_init__``, ``frozen=True`` (hashable, assignment raises
FrozenInstanceError), and ``replace``/``fields``. tests/unit/test_valueclass.py checks each
against ``dataclasses`` on the same class bodies.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from types import CodeType, FunctionType

from backchain.core.static_typing import TYPE_CHECKING, TypeVar, dataclass_transform, overload

if TYPE_CHECKING:
    from typing import Any

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


_PLACEHOLDER = "\x00field"
"""How the template's constants for field names begin (no identifier can)."""

_SHAPES: dict[tuple[tuple[bool, ...], bool], CodeType] = {}
"""The compiled ``__init__`` of each shape: which fields have a factory, and ``__post_init__``."""


def _shape_code(factories: tuple[bool, ...], post_init: bool) -> CodeType:
    """The code of an ``__init__`` of this shape, with placeholder names.

    Compiling is what a class costs (about 0.2 ms, most of a class's build), and most classes
    share a shape with another: each shape is compiled once, and a class gets a copy of its code
    with the parameters renamed and the placeholder constants replaced by the field names. The
    setter and the factories are globals of the class's own function, which no parameter name
    can shadow.
    """
    code = _SHAPES.get((factories, post_init))
    if code is None:
        params = ", ".join(["self", *(f"_p{i}" for i in range(len(factories)))])
        lines = []
        for i, factory in enumerate(factories):
            value = f"_f{i}() if _p{i} is _MISSING else _p{i}" if factory else f"_p{i}"
            lines.append(f"    _set(self, {_PLACEHOLDER + str(i)!r}, {value})")
        if post_init:
            lines.append("    self.__post_init__()")
        scope: dict[str, Any] = {}
        # The source is made of placeholder names only: nothing of the class body is in it.
        exec(f"def __init__({params}):\n" + "\n".join(lines or ["    pass"]), scope)
        code = _SHAPES[(factories, post_init)] = scope["__init__"].__code__
    return code


def _make_init(cls: type[Any], found: dict[str, Field], frozen: bool) -> FunctionType:
    """``__init__``: the fields in order, those with a default or a factory last."""
    scope: dict[str, Any] = {"__builtins__": builtins, "_MISSING": MISSING,
                             "_set": object.__setattr__ if frozen else setattr}  # fmt: skip
    defaults: list[Any] = []
    for i, spec in enumerate(found.values()):
        if spec.default_factory is not MISSING:
            scope[f"_f{i}"] = spec.default_factory
            defaults.append(MISSING)
        elif spec.default is not MISSING:
            defaults.append(spec.default)
        elif defaults:
            raise TypeError(f"non-default field {spec.name!r} follows a default field "
                            f"in {cls.__qualname__}")  # fmt: skip
    if "self" in found:
        raise TypeError(f"a field of {cls.__qualname__} is named 'self'")
    factories = tuple(spec.default_factory is not MISSING for spec in found.values())
    template = _shape_code(factories, hasattr(cls, "__post_init__"))
    names = list(found)
    marker = len(_PLACEHOLDER)
    consts = tuple(names[int(c[marker:])] if isinstance(c, str) and c.startswith(_PLACEHOLDER)
                   else c for c in template.co_consts)  # fmt: skip
    code = template.replace(co_varnames=("self", *names), co_consts=consts,
                            co_qualname=f"{cls.__qualname__}.__init__")  # fmt: skip
    return FunctionType(code, scope, "__init__", tuple(defaults))


def _build(cls: type[Any], frozen: bool) -> type[Any]:
    found = _collect(cls)
    init = _make_init(cls, found, frozen)
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
