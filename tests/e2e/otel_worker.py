"""A worker process for tests/e2e/test_telemetry.py: ``python -m tests.e2e.otel_worker <mode> <plan.json>``.

OpenTelemetry providers are process-global, so each scenario runs in its own process, wired to the test's Azurite
and stand-ins through the environment, exactly as a Functions worker is:

* ``app``: APPLICATIONINSIGHTS_CONNECTION_STRING is set and nothing configured OpenTelemetry before; the first
  ``get_app()`` configures azure-monitor-opentelemetry (the production path). The SDK's in-memory exporters are
  added to the providers it installed, so the test sees the records as exported.
* ``worker``: an OpenTelemetry logger provider is installed first, as the Functions worker does with
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true; ``get_app()`` must leave it alone.
* ``off``: no connection string; nothing of OpenTelemetry may even be imported.

It then delivers the plan's Service Bus bodies to RegisterAttendee.main, runs PullMetrics once, flushes, and prints
one JSON document: the telemetry state, the exported log records and spans, every outbound connection attempt, and
which OpenTelemetry modules were imported.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any

ATTEMPTS: list[str] = []


def _record_network(event: str, args: tuple[Any, ...]) -> None:
    """Every socket connect and name lookup that does not stay on this machine."""
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else str(address)
    elif event == "socket.getaddrinfo":
        host = str(args[0])
    else:
        return
    if host in {"localhost", ""} or host.startswith("/"):
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    ATTEMPTS.append(f"{event} {host}")


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def main(mode: str, plan_path: str) -> None:
    sys.addaudithook(_record_network)
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))

    log_exporter = span_exporter = None
    if mode == "worker":
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

        log_exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        set_logger_provider(provider)
        logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
        logging.getLogger().setLevel(logging.INFO)

    from shared import telemetry
    from shared.app import get_app

    get_app()  # the composition root configures telemetry on first use
    state = telemetry.state()

    if mode == "app" and state == "app":
        from opentelemetry import trace
        from opentelemetry._logs import get_logger_provider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        log_exporter = InMemoryLogRecordExporter()
        span_exporter = InMemorySpanExporter()
        get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(log_exporter))  # type: ignore[attr-defined]
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(span_exporter))  # type: ignore[attr-defined]

    from azure.functions.timer import TimerRequest

    from PullMetrics import main as pull_metrics
    from RegisterAttendee import main as register_attendee
    from sandbox.triggers import service_bus_message

    for body in plan["messages"]:
        register_attendee(service_bus_message(body if isinstance(body, dict) else body.encode("utf-8")))
    pull_metrics(TimerRequest(past_due=False, schedule_status={}, schedule={}))

    logs: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    if mode == "app" and state == "app":
        from opentelemetry import trace
        from opentelemetry._logs import get_logger_provider

        get_logger_provider().force_flush()  # type: ignore[attr-defined]
        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    if log_exporter is not None:
        for item in log_exporter.get_finished_logs():
            record = getattr(item, "log_record", item)
            logs.append(
                {
                    "body": _plain(record.body),
                    "severity": record.severity_text,
                    "attributes": _plain(dict(record.attributes or {})),
                }
            )
    if span_exporter is not None:
        spans = [
            {"name": s.name, "attributes": _plain(dict(s.attributes or {}))} for s in span_exporter.get_finished_spans()
        ]
    imported = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor")))
    print(json.dumps({"state": state, "logs": logs, "spans": spans, "network": ATTEMPTS, "imported": imported}))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
