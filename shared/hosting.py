"""What the Functions host allows an invocation: ``functionTimeout``, read as the host reads it.

Why: PULL_METRICS_BUDGET_SECONDS must leave a run time to finish inside the host's timeout, and the timeout lives
outside the app's settings: in host.json at the app's root, or overridden by the app setting
``AzureFunctionsJobHost__functionTimeout`` (host.json values can be overridden by app settings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
OVERRIDE = "AzureFunctionsJobHost__functionTimeout"
# What a PullMetrics run may still need after its budget: one ON24 page call (55 s) and a wait for the shared ON24
# limit (65 s), the same allowance the on-demand pull makes inside the 230 s HTTP limit.
METRICS_RUN_TAIL_SECONDS = 120
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):(\d{2}):(\d{2})(?:\.\d+)?")


def function_timeout_seconds(environ: Mapping[str, str], host_json: Path = HOST_JSON) -> float | None:
    """The invocation time-out in seconds, or None when it is unbounded (``-1``) or not known (no host.json).

    Raises:
        ValueError: the value is not a ``[d.]hh:mm:ss`` time span or ``-1``; the message says where it came from.
    """
    text = (environ.get(OVERRIDE) or "").strip()
    where = f"app setting {OVERRIDE}"
    if not text:
        try:
            text = str(json.loads(host_json.read_text(encoding="utf-8")).get("functionTimeout") or "")
        except FileNotFoundError:
            return None
        where = f"functionTimeout in {host_json.name}"
    if not text or text == "-1":
        return None
    match = _TIMESPAN.fullmatch(text)
    if not match:
        raise ValueError(f"{where} must be a time span such as 00:10:00 or -1")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def metrics_budget_problem(
    budget_seconds: float, environ: Mapping[str, str], host_json: Path = HOST_JSON
) -> str | None:
    """Why PULL_METRICS_BUDGET_SECONDS cannot work with the host's time-out (the text after "setting "), or None."""
    try:
        timeout = function_timeout_seconds(environ, host_json)
    except ValueError as exc:
        return str(exc)
    if timeout is None or budget_seconds + METRICS_RUN_TAIL_SECONDS <= timeout:
        return None
    return (
        f"PULL_METRICS_BUDGET_SECONDS must be at most {timeout - METRICS_RUN_TAIL_SECONDS:g}: the host stops an "
        f"invocation after functionTimeout ({timeout:g} s) and a run needs up to {METRICS_RUN_TAIL_SECONDS} s after "
        "its budget to finish its last ON24 page call and limit wait; lower the budget or raise functionTimeout "
        "in host.json"
    )
