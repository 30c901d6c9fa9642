"""OpenTelemetry export of this worker's logs and traces to Application Insights.

Why: the v1 Python worker forwards only a log line's text to the Functions host, so the ids the app passes as
logging ``extra`` (``org_id``, ``registration_id``, ``outcome``, ``duration_ms``, ...) never reach Application
Insights that way. Exported through OpenTelemetry, each ``extra`` key becomes a log attribute, which Application
Insights stores as a custom dimension that queries and alerts can use (docs/queries.kql).

Microsoft's guidance ("Use OpenTelemetry with Azure Functions",
https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto, Python): ``"telemetryMode": "OpenTelemetry"``
in host.json, ``APPLICATIONINSIGHTS_CONNECTION_STRING``, ``azure-monitor-opentelemetry`` in requirements.txt, and
either the app setting ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` (the worker then configures the distro
itself and streams its logs directly, so the host does not log them a second time) or a call to
``configure_azure_monitor()`` in code. The infrastructure template sets the app setting; ``configure`` covers every
other way the app runs with a connection string (``func start`` with a connection string, a hand-made deployment),
and does nothing when the worker already did it, so telemetry is never exported twice.

Only a name lookup happens at import: the distro (a few hundred milliseconds of imports) is imported when a
connection string is set, on the first ``get_app()``, never when a function module is loaded.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Literal

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APP_LOGGER = "shared"
"""The logger namespace of the app's structured lines (shared.entrypoints.queue, shared.entrypoints.timers, ...)."""

_log = logging.getLogger(__name__)

State = Literal["off", "worker", "app"]
_lock = threading.Lock()
_state: State | None = None


def configure(environ: Mapping[str, str] | None = None, **options: Any) -> State:
    """Export logs and traces through azure-monitor-opentelemetry, at most once per process.

    Args:
        environ: the environment to read; ``os.environ`` when omitted.
        options: passed on to ``configure_azure_monitor`` (e.g. extra ``log_record_processors``); the default
            collects the root logger, as the Functions worker does.

    Returns:
        ``"off"`` without ``APPLICATIONINSIGHTS_CONNECTION_STRING``, or when the distro cannot be configured (a
        malformed connection string: logged as an error, the functions keep working); ``"worker"`` when the
        Functions worker had already installed an OpenTelemetry logger provider
        (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``); ``"app"`` when this call configured it. Later calls
        return the first answer.
    """
    global _state
    with _lock:
        if _state is not None:
            return _state
        env = os.environ if environ is None else environ
        if not (env.get(CONNECTION_STRING_SETTING) or "").strip():
            _state = "off"
            return _state
        if _logger_provider_installed():
            _state = "worker"
        else:
            try:
                from azure.monitor.opentelemetry import configure_azure_monitor

                configure_azure_monitor(**{"logger_name": "", **options})
            except Exception as exc:  # telemetry must never stop the functions; say why it is off instead
                _log.error(
                    "OpenTelemetry export is off: configuring azure-monitor-opentelemetry failed (%s: %s); check %s",
                    type(exc).__name__,
                    exc,
                    CONNECTION_STRING_SETTING,
                )
                _state = "off"
                return _state
            _state = "app"
        # The app's outcome lines are INFO: make sure a stricter inherited level does not drop them before export.
        app_logger = logging.getLogger(APP_LOGGER)
        if app_logger.getEffectiveLevel() > logging.INFO:
            app_logger.setLevel(logging.INFO)
        return _state


def state() -> State | None:
    """What the first ``configure`` call found or did; None before it ran."""
    return _state


def _logger_provider_installed() -> bool:
    """True when an OpenTelemetry SDK logger provider is already the global one (the worker configured it)."""
    sdk_logs = sys.modules.get("opentelemetry.sdk._logs")
    if sdk_logs is None:
        return False
    from opentelemetry._logs import get_logger_provider

    return isinstance(get_logger_provider(), sdk_logs.LoggerProvider)
