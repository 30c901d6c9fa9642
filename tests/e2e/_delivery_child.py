"""Deliver one Service Bus message to RegisterAttendee.main in a process of its own, so a test can kill it.

Usage: ``python -m tests.e2e._delivery_child <message.json>``; the file holds ``{"body": ..., "message_id": ...,
"enqueued_at": iso}``. The environment is the worker's (the parent test passes its own). Prints the outcome.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from RegisterAttendee import main
from sandbox.triggers import service_bus_message


def run(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    message = service_bus_message(
        spec["body"], message_id=spec["message_id"], enqueued_time=datetime.fromisoformat(spec["enqueued_at"])
    )
    main(message)
    print("delivered", flush=True)


if __name__ == "__main__":
    run(sys.argv[1])
