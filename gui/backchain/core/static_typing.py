"""What the type checker needs of ``typing`` at run time, without importing it (about 3 ms).

The package's annotations are strings (``from __future__ import annotations``), so most modules
import their typing names under this module's ``TYPE_CHECKING``, which mypy takes as true by its
name. A few constructs run, though:
protocol and generic bases, type variables, and the ``overload`` and ``dataclass_transform``
decorators. For the type checker this module re-exports ``typing``'s own; at run time it gives
stand-ins that build the same plain classes and functions. A protocol here is never checked at
run time (none of the package's is ``runtime_checkable``), and no class is subscripted outside an
annotation except in its own bases.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic as Generic
    from typing import Protocol as Protocol
    from typing import TypeVar as TypeVar
    from typing import dataclass_transform as dataclass_transform
    from typing import overload as overload
else:

    class _Parametrised:
        """A base that ``Base[T]`` leaves as it is, as a class statement's base."""

        def __class_getitem__(cls, _parameters: object) -> type:
            return cls

    class Generic(_Parametrised):
        """``typing.Generic`` at run time: a plain base."""

    class Protocol(_Parametrised):
        """``typing.Protocol`` at run time: a plain base."""

    def TypeVar(name: str, *_constraints: object, **_options: object) -> str:
        """``typing.TypeVar`` at run time: only its name, for the bases it is written in."""
        return name

    def overload(function: object) -> object:
        """The last definition of an overloaded name, the implementation, is what remains."""
        return function

    def dataclass_transform(**_options: object) -> object:
        """A decorator that leaves the function it decorates as it is."""
        return overload
