"""Reconciliation: compare CRM, the ledger and ON24 per webinar, show the drift, and repair it through the normal
registration path (``run``: one webinar; ``classify``: the five classes; ``schedule``: on demand, backfill, daily;
``view``: what the status route and the reconcile route answer)."""

from shared.reconcile.classify import Classification, Finding, classify
from shared.reconcile.run import OverBudget, ReconcilePorts, Reconciliation, reconcile_webinar
from shared.reconcile.schedule import ScheduleParts, TimerReport, request, run_reconciliations
from shared.reconcile.view import add_to_status, reconciliation_view, state_view

__all__ = [
    "Classification",
    "Finding",
    "OverBudget",
    "ReconcilePorts",
    "Reconciliation",
    "ScheduleParts",
    "TimerReport",
    "add_to_status",
    "classify",
    "reconcile_webinar",
    "reconciliation_view",
    "request",
    "run_reconciliations",
    "state_view",
]
