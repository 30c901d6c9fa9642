"""Query parameters of the admin routes that are flags (``true``/``false``)."""

from __future__ import annotations

from collections.abc import Mapping


class FlagError(ValueError):
    """A flag parameter that is neither true nor false; ``name`` is the parameter."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: must be true or false")
        self.name = name


def query_flag(params: Mapping[str, str], name: str) -> bool:
    """A ``true``/``false`` (or ``1``/``0``) query parameter; absent or empty: false.

    Raises:
        FlagError: any other value.
    """
    value = (params.get(name) or "").strip().lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise FlagError(name)
