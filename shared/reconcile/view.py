"""What the routes answer about reconciliations: counts per class and times always; the drifting registrations'
CRM ids only when asked (``with_ids``); never an email or a name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.store.reconciliations import CLASSES, DRIFT_CLASSES, ReconcileState

if TYPE_CHECKING:
    from shared.reconcile.run import Reconciliation


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _counts(counts: dict[str, int]) -> dict[str, int] | None:
    if not counts:
        return None
    return {name: int(counts.get(name, 0)) for name in (*CLASSES, "forgotten")}


def state_view(state: ReconcileState, *, with_ids: bool = False) -> dict[str, Any]:
    """One webinar's reconciliation on the status route (``counts`` null: never reconciled)."""
    counts = _counts(state.counts)
    view: dict[str, Any] = {
        "lastReconciledAt": _iso(state.reconciled_at),
        "counts": counts,
        "drift": sum(counts[name] for name in DRIFT_CLASSES) if counts else None,
        "requested": None
        if state.requested_at is None
        else {"at": _iso(state.requested_at), "repair": state.request_repair, "by": state.requested_by},
        "lastRepair": None
        if state.repaired_at is None
        else {"at": _iso(state.repaired_at), "by": state.repaired_by, "outcomes": dict(state.repairs)},
        "lastError": state.last_error,
    }
    if with_ids:
        view["ids"] = {name: list(state.ids.get(name, ())) for name in DRIFT_CLASSES}
    return view


def reconciliation_view(result: Reconciliation, *, with_ids: bool = False) -> dict[str, Any]:
    """The answer of a reconciliation that finished within the request."""
    counts = _counts(result.counts) or {}
    view: dict[str, Any] = {
        "orgId": result.org_id,
        "webinarId": result.webinar_id,
        "status": result.status,
        "reconciledAt": _iso(result.reconciled_at),
        "counts": counts,
        "drift": sum(counts.get(name, 0) for name in DRIFT_CLASSES),
        "repairs": dict(result.repairs) or None,
        "calls": {"on24ListPages": result.list_calls, "crmPages": result.crm_pages},
    }
    if with_ids:
        view["ids"] = {name: list(result.ids.get(name, ())) for name in DRIFT_CLASSES}
    return view


def add_to_status(view: dict[str, Any], states: Sequence[ReconcileState], *, with_ids: bool = False) -> None:
    """Put each webinar's reconciliation on the status answer's webinar rows (``reconciliation``: null when the
    webinar was never reconciled nor asked for); a webinar known only by its reconciliation gets a row too."""
    by_webinar = {state.webinar_id: state for state in states}
    rows = view.setdefault("webinars", [])
    for row in rows:
        state = by_webinar.pop(str(row.get("webinarId")), None)
        row["reconciliation"] = state_view(state, with_ids=with_ids) if state is not None else None
    for webinar_id, state in sorted(by_webinar.items()):
        rows.append(
            {"webinarId": webinar_id, "status": "never_pulled", "reconciliation": state_view(state, with_ids=with_ids)}
        )
