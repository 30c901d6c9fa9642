"""``built_once``: a thread-safe ``cached_property`` for the composition root's long-lived clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

_T = TypeVar("_T")
_MISSING: Any = object()


class _HasBuildLock(Protocol):
    _build_lock: Any
    __dict__: dict[str, Any]


class built_once(Generic[_T]):
    """``functools.cached_property``, built under the owner's ``_build_lock``: two threads asking at once never
    build (and leak) two clients; once built, reads take no lock (the value sits in the instance's ``__dict__``)."""

    def __init__(self, build: Callable[[Any], _T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __get__(self, owner_instance: _HasBuildLock, owner: object = None) -> _T:
        value = owner_instance.__dict__.get(self._name, _MISSING)
        if value is _MISSING:
            with owner_instance._build_lock:
                value = owner_instance.__dict__.get(self._name, _MISSING)
                if value is _MISSING:
                    value = self._build(owner_instance)
                    owner_instance.__dict__[self._name] = value
        return value  # type: ignore[no-any-return]
