"""Starting a long operation from an admin route: record it, answer ``202`` with where and when to poll."""

from __future__ import annotations

from typing import Any

from shared.app import App
from shared.entrypoints.http_errors import Answer
from shared.operations import POLL_SECONDS, OperationPorts, href, start
from shared.store.operations import OperationKind, OperationStore


def operation_ports(app: App) -> OperationPorts:
    return OperationPorts(
        operations=OperationStore(app.tables.table("orgs")),
        sync=app.sync_state,
        purges=app.purges,
        reconciliations=app.reconciliations,
    )


def accepted(
    app: App, org_id: str, payload: dict[str, Any], kind: OperationKind, webinar_id: str | None = None
) -> Answer:
    """``202``: the work goes on after this request; ``Location`` is the operation to poll, ``Retry-After`` when."""
    operation = start(operation_ports(app), org_id, kind, webinar_id=webinar_id)
    link = href(operation)
    body = payload | {"operation": {"id": operation.operation_id, "href": link}}
    return Answer(202, body, {"Location": link, "Retry-After": str(POLL_SECONDS)})
