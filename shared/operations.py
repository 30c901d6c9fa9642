"""Long operations (async request-reply): a route that cannot finish in its request answers ``202`` with the
``Location`` of an operation, which answers ``202`` while the work goes on and ``200`` with the result once done.

Nothing polls the work from here: the operation's state is read from the rows the work itself keeps, when
someone asks, and the outcome is then recorded on the operation's row (so it stays after those rows change):

- a pull (``POST .../webinars/{id}/pull`` that ran out of budget, or found a PullMetrics run pulling the webinar)
  is finished by PullMetrics: it is done once the webinar's sync state shows an attempt after the one it had when
  the ``202`` was given that finished with nothing pending (succeeded) or ended in ``error`` / ``not found``
  (failed);
- a purge (``DELETE .../credentials?purge=true``) is finished by the PullMetrics timer's sweeps: done once its
  purge request says nothing is left, or is gone (closed after the final check);
- a reconciliation (``POST .../webinars/{id}/reconcile`` too large for its request) is finished by the PullMetrics
  timer's reconciliation step: done once the webinar's reconciliation row says it answered this operation's
  request (``shared.store.reconciliations``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.store.operations import Operation, OperationKind
from shared.store.purges import PURGED_PARTS, PurgeRequest
from shared.store.reconciliations import ReconcileState
from shared.store.sync_state import COUNTERS, WebinarSyncState

OPERATION_ROUTE = "/api/orgs/{org}/operations/{operation}"
POLL_SECONDS = 30
"""The ``Retry-After`` of a running operation: PullMetrics runs every few minutes; a poll every 30 s is cheap."""


class OperationRows(Protocol):
    def create(self, operation: Operation) -> Operation: ...
    def get(self, org_id: str, operation_id: str) -> Operation | None: ...
    def finish(self, operation: Operation) -> Operation | None: ...


class SyncRows(Protocol):
    def get(self, org_id: str, webinar_id: str) -> WebinarSyncState | None: ...


class PurgeRows(Protocol):
    def get(self, org_id: str) -> PurgeRequest | None: ...


class ReconcileRows(Protocol):
    def get(self, org_id: str, webinar_id: str) -> ReconcileState | None: ...


@dataclass(frozen=True)
class OperationPorts:
    operations: OperationRows
    sync: SyncRows
    purges: PurgeRows
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    reconciliations: ReconcileRows | None = None


def href(operation: Operation) -> str:
    return OPERATION_ROUTE.format(org=operation.org_id, operation=operation.operation_id)


def start(ports: OperationPorts, org_id: str, kind: OperationKind, *, webinar_id: str | None = None) -> Operation:
    """Record a running operation (for a pull, with the webinar's last attempt as its starting point)."""
    base = None
    if webinar_id is not None:
        state = ports.sync.get(org_id, webinar_id)
        base = state.last_attempt_at if state else None
    operation = Operation(
        org_id=org_id,
        operation_id=uuid.uuid4().hex,
        kind=kind,
        created_at=ports.clock(),
        webinar_id=webinar_id,
        base_attempt_at=base,
    )
    return ports.operations.create(operation)


def current(ports: OperationPorts, org_id: str, operation_id: str) -> Operation | None:
    """The operation as it stands now; an outcome found for the first time is recorded on its row."""
    operation = ports.operations.get(org_id, operation_id)
    if operation is None or operation.status != "running":
        return operation
    outcomes = {"pull": _pull_outcome, "purge": _purge_outcome, "reconcile": _reconcile_outcome}
    done = outcomes[operation.kind](ports, operation)
    if done is None:
        return operation
    finished = ports.operations.finish(done)
    if finished is not None:
        return finished
    return ports.operations.get(org_id, operation_id) or done  # another reader recorded it first


def view(operation: Operation) -> dict[str, Any]:
    """What ``GET .../operations/{id}`` answers (``OperationView``)."""
    return {
        "id": operation.operation_id,
        "orgId": operation.org_id,
        "kind": operation.kind,
        "status": operation.status,
        "webinarId": operation.webinar_id,
        "createdAt": operation.created_at.astimezone(UTC).isoformat(),
        "finishedAt": operation.finished_at.astimezone(UTC).isoformat() if operation.finished_at else None,
        "result": operation.result or None,
        "error": operation.error,
    }


def _pull_outcome(ports: OperationPorts, operation: Operation) -> Operation | None:
    """Done once an attempt after the ``202`` finished (nothing pending) or failed (an error ends the operation
    even with pages left: PullMetrics retries the webinar, and a poller should not wait on that forever)."""
    state = ports.sync.get(operation.org_id, operation.webinar_id or "")
    if state is None or state.last_attempt_at is None:
        return None
    if operation.base_attempt_at is not None and state.last_attempt_at <= operation.base_attempt_at:
        return None
    finished = replace(operation, finished_at=ports.clock())
    if state.status in ("error", "not found"):
        code = "webinar_not_found" if state.status == "not found" else "pull_failed"
        reason = state.last_error or f"the pull of webinar {state.webinar_id} failed"
        message = f"{reason}; PullMetrics retries it in its next runs" if code == "pull_failed" else reason
        return replace(finished, status="failed", error={"code": code, "message": message[:600]})
    if state.pending_end is not None or state.status != "ok":
        return None
    counts = {name: int(state.counts.get(name, 0)) for name in COUNTERS}
    return replace(finished, status="succeeded", result={"webinarId": state.webinar_id, "counts": counts})


def _reconcile_outcome(ports: OperationPorts, operation: Operation) -> Operation | None:
    if ports.reconciliations is None:
        return None
    state = ports.reconciliations.get(operation.org_id, operation.webinar_id or "")
    if state is None or state.reconciled_at is None:
        return None
    later = state.requested_at is None and state.reconciled_at >= operation.created_at  # a later request answered too
    if state.answered_id != operation.operation_id and not later:
        return None
    result: dict[str, Any] = {"webinarId": state.webinar_id, "counts": state.counts, "repairs": state.repairs or None}
    return replace(operation, status="succeeded", finished_at=ports.clock(), result=result)


def _purge_outcome(ports: OperationPorts, operation: Operation) -> Operation | None:
    request = ports.purges.get(operation.org_id)
    if request is not None and request.deleted_at is None:
        return None
    deleted = {part: request.deleted.get(part, 0) for part in PURGED_PARTS} if request else None
    result: dict[str, Any] = {"purge": "deleted", "deleted": deleted}
    return replace(operation, status="succeeded", finished_at=ports.clock(), result=result)
