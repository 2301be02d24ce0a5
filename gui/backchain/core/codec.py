"""CommitPlan and CommitRequest to JSON and back, losslessly (the journal and resume use it).

The codec is driven by the value classes' own type hints, so a field added to the model is
recorded and restored without touching this module; the round-trip test covers every field.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping

from backchain.core import valueclass
from backchain.core.model import CommitPlan, CommitRequest
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

CODEC_VERSION = 2


def encode(value: object) -> Any:
    """A JSON-ready form of a model value (value classes, enums, tuples, mappings, scalars)."""
    if valueclass.is_valueclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in valueclass.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): encode(item) for key, item in value.items()}
    return value


def _decode(hint: Any, data: Any) -> Any:
    # Imported here: a commit only encodes, and typing would cost its start about 3 ms.
    import typing

    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return data
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, data)
            except (TypeError, ValueError, KeyError):
                continue
        raise ValueError(f"{data!r} matches none of {hint}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(data, list):
            raise TypeError(f"expected a list for {hint}, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in data)
        return tuple(_decode(arg, item) for arg, item in zip(args, data, strict=True))
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {hint}, got {data!r}")
        _key_hint, value_hint = typing.get_args(hint) or (str, typing.Any)
        return {str(k): _decode(value_hint, v) for k, v in data.items()}
    if isinstance(hint, type) and valueclass.is_valueclass(hint):
        return decode(hint, data)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if hint is bool:
        if not isinstance(data, bool):
            raise TypeError(f"expected a boolean, got {data!r}")
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypeError(f"expected an integer, got {data!r}")
        return data
    if hint is float:
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise TypeError(f"expected a string, got {data!r}")
        return data
    raise TypeError(f"the codec does not know the type {hint}")


def decode(cls: type[T], data: Any) -> T:
    """Rebuild a model value from ``encode``'s output; ValueError/TypeError if it does not fit.

    A field missing from ``data`` (a record made before the field existed) takes its default.
    """
    if not isinstance(data, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {data!r}")
    import typing

    # The model takes Any under TYPE_CHECKING only (see core/static_typing.py): give it here.
    hints = typing.get_type_hints(cls, localns={"Any": typing.Any})
    values: dict[str, Any] = {}
    for field in valueclass.fields(cls):
        if field.name in data:
            values[field.name] = _decode(hints[field.name], data[field.name])
        elif field.default is valueclass.MISSING and field.default_factory is valueclass.MISSING:
            raise KeyError(f"{cls.__name__} record lacks '{field.name}'")
    return cls(**values)


def plan_to_record(plan: CommitPlan) -> dict[str, Any]:
    """The whole plan, request included, as JSON-ready data."""
    return {"codec": CODEC_VERSION, "plan": encode(plan)}


def plan_from_record(record: Mapping[str, Any]) -> CommitPlan:
    """The plan ``plan_to_record`` wrote."""
    if record.get("codec") != CODEC_VERSION:
        raise ValueError(f"unknown plan codec version {record.get('codec')!r}")
    return decode(CommitPlan, record["plan"])


def request_from_record(data: Any) -> CommitRequest:
    """A request on its own (``encode(request)``)."""
    return decode(CommitRequest, data)
