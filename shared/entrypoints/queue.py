"""From a Service Bus message to a recorded registration outcome, with one structured log line.

The message completes (the function returns) when its outcome is recorded: registered, updated,
cancelled, duplicate, stale, skipped, or failed permanently with a reason. A body that cannot be parsed
is kept whole (``shared.store.rejected``). Transient faults and configuration errors raise, so
Service Bus redelivers and, after ``maxDeliveryCount`` attempts, dead-letters the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import azure.functions as func

from shared.app import App
from shared.errors import ConfigError, TransientError
from shared.messages import ContactErasure, MessageError, org_id_hint, parse_message
from shared.registration import Outcome, handle_contact_erasure, handle_registration

_log = logging.getLogger(__name__)


def process_registration_message(msg: func.ServiceBusMessage, app: App) -> Outcome:
    """Handle one RegisterAttendee delivery.

    Raises:
        TransientError: ON24, Dataverse or storage is unavailable (or busy with a duplicate): redeliver.
        ConfigError: the app is misconfigured: redeliver, and dead-letter if it is not fixed in time.
    """
    started = time.perf_counter()
    message_id = msg.message_id or ""
    delivery = getattr(msg, "delivery_count", None)
    received_at = getattr(msg, "enqueued_time_utc", None) or datetime.now(UTC)
    body = msg.get_body()
    context = {"message_id": message_id, "delivery_count": delivery}
    try:
        cmd = parse_message(body, content_type=msg.content_type, application_properties=msg.application_properties)
    except MessageError as exc:
        sequence = getattr(msg, "sequence_number", None)
        app.rejected.record(
            message_id, str(exc), body, org_id=org_id_hint(body), sequence_number=sequence, delivery_count=delivery
        )
        _log.error(
            "registration message %s rejected: %s",
            message_id,
            exc,
            extra={**context, "outcome": "rejected", "reason": str(exc), "duration_ms": _ms(started)},
        )
        return Outcome("failed", f"rejected message: {exc}")

    ports = app.registration_ports()
    if isinstance(cmd, ContactErasure):
        subject = f"contact {cmd.contact_id}"
        context |= {"org_id": cmd.org_id, "contact_id": cmd.contact_id, "action": "forget"}
        run: Callable[[], Outcome] = lambda: handle_contact_erasure(  # noqa: E731
            cmd, ports, received_at=received_at, delivery_count=delivery
        )
    else:
        subject = f"registration {cmd.registration_id}"
        context |= {"org_id": cmd.org_id, "registration_id": cmd.registration_id, "action": cmd.action}
        run = lambda: handle_registration(cmd, ports, received_at=received_at, delivery_count=delivery)  # noqa: E731
    try:
        outcome = run()
    except (TransientError, ConfigError) as exc:
        _log.warning(
            "%s (org %s, %s) will be retried: %s",
            subject,
            cmd.org_id,
            context["action"],
            exc,
            extra={**context, "outcome": "retry", "error_type": type(exc).__name__, "duration_ms": _ms(started)},
        )
        raise
    level = logging.ERROR if outcome.status == "failed" else logging.INFO
    _log.log(
        level,
        "%s (org %s, ON24 event %s): %s%s",
        subject,
        cmd.org_id,
        outcome.webinar_id,
        outcome.status,
        f" ({outcome.reason})" if outcome.reason else "",
        extra={
            **context,
            "on24_event_id": outcome.webinar_id,
            "on24_registrant_id": outcome.registrant_id,
            "outcome": outcome.status,
            "reason": outcome.reason,
            "duration_ms": _ms(started),
        },
    )
    return outcome


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
