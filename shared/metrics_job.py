"""The PullMetrics run: wire the metrics use case to the app's clients and log one summary line.

Each run first does the privacy housekeeping (``shared.privacy``: purges of orgs that left, expiry of rejected
bodies, retention of closed webinars' ledger rows) within ``HOUSEKEEPING_SHARE`` of the budget, then pulls
metrics for the rest of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta

from shared.app import App
from shared.metrics import MetricsOptions, MetricsPorts, RunReport, pull_metrics
from shared.privacy import HousekeepingReport, housekeeping

_log = logging.getLogger(__name__)

HOUSEKEEPING_SHARE = 0.1  # of PULL_METRICS_BUDGET_SECONDS, at most; metrics get whatever housekeeping leaves


def metrics_options(app: App) -> MetricsOptions:
    s = app.settings
    return MetricsOptions(
        budget_seconds=s.metrics_budget_seconds,
        grace=timedelta(days=s.metrics_grace_days),
        lookback=timedelta(hours=s.metrics_lookback_hours),
        attendee_calls_per_minute=s.on24_attendee_calls_per_minute,
    )


def metrics_ports(app: App) -> MetricsPorts:
    """The metrics use case's ports wired to the app's stores and clients (tests replace the clocks)."""
    return MetricsPorts(
        orgs=app.credentials,
        ledger=app.ledger,
        sync=app.sync_state,
        on24_for=app.on24_for,
        crm_for=app.dataverse_for,
    )


def run_pull_metrics(app: App, *, past_due: bool = False) -> RunReport:
    """One timer run. Never raises for one org's trouble; storage or configuration faults do raise."""
    started = time.perf_counter()
    options = metrics_options(app)
    run_housekeeping(app, budget_seconds=options.budget_seconds * HOUSEKEEPING_SHARE)
    left = max(0.0, options.budget_seconds - (time.perf_counter() - started))
    report = pull_metrics(metrics_ports(app), replace(options, budget_seconds=left))
    totals = {name: report.total(name) for name in ("pulled", "matched", "written", "unchanged", "unmatched", "failed")}
    _log.info(
        "metrics run: %d webinars, %s; %d orgs failed; %d webinars left for the next run%s",
        len(report.webinars),
        ", ".join(f"{k} {v}" for k, v in totals.items()),
        len(report.orgs_failed),
        report.left_for_next_run,
        " (run was past due)" if past_due else "",
        extra={
            **totals,
            "webinars": len(report.webinars),
            "orgs_failed": sorted(report.orgs_failed),
            "left_for_next_run": report.left_for_next_run,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    return report


def run_housekeeping(app: App, *, budget_seconds: float) -> HousekeepingReport:
    """The privacy share of a timer run, with one summary line. Never raises (failures are in the report)."""
    started = time.perf_counter()
    report = housekeeping(app.privacy_ports(), app.privacy_options(), budget_seconds=budget_seconds)
    _log.info(
        "housekeeping: %d purges worked on (%d finished), %d rejected messages expired, personal data cleared "
        "from %d ledger rows (%d rows kept for now), %d webinars cleared, %d left for the next run%s",
        len(report.purged),
        len(report.purges_closed),
        report.rejected_expired,
        report.rows_cleared,
        sum(report.rows_kept.values()),
        report.webinars_cleared,
        report.webinars_left,
        f"; {len(report.errors)} steps failed" if report.errors else "",
        extra={
            "purges": len(report.purged),
            "purges_finished": len(report.purges_closed),
            "rejected_expired": report.rejected_expired,
            "ledger_rows_cleared": report.rows_cleared,
            "ledger_rows_kept": sum(report.rows_kept.values()),
            "webinars_cleared": report.webinars_cleared,
            "webinars_left": report.webinars_left,
            "housekeeping_errors": len(report.errors),
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    return report
