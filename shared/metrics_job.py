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
from shared.errors import IntegrationError
from shared.health import HealthPorts, HealthReport, refresh_health
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
        provider_for=app.provider_for,
        crm_for=app.crm_for,
        limiter_for=app.attendee_limiter,
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
    refresh_org_health(app)
    return report


# ---- the health summaries the status route reads (after the pulls, in the same timer run) --------------------------
def health_ports(app: App) -> HealthPorts:
    return HealthPorts(
        orgs=app.credentials, ledger=app.ledger, rejected=app.rejected, rows=app.health, sync=app.sync_state
    )


def refresh_org_health(app: App) -> HealthReport | None:
    """Bring the orgs' health summaries up to date. A failure is logged, never fails the run: the pulls are
    done and saved, and the next run counts again."""
    started = time.perf_counter()
    try:
        report = refresh_health(health_ports(app))
    except IntegrationError as exc:
        _log.error("health: summaries not refreshed: %s", exc, extra={"error": type(exc).__name__})
        return None
    for org_id, token in sorted(report.tokens.items()):
        _log.warning(
            "health: the ON24 token of org %s needs an admin (%s): %s",
            org_id,
            token["state"],
            token["message"],
            extra={"org_id": org_id, "token_state": token["state"], "idle_days": token["idleDays"]},
        )
    _log.info(
        "health: %d org summaries counted, %d unchanged, rejected messages %s%s",
        len(report.counted),
        len(report.unchanged),
        "counted" if report.rejected_counted else "unchanged",
        f"; {len(report.failed)} orgs left for the next run" if report.failed else "",
        extra={
            "orgs_counted": len(report.counted),
            "health_orgs_failed": sorted(report.failed),
            "tokens_attention": [
                f"{org}:{token['state']}:{token['idleDays']}" for org, token in sorted(report.tokens.items())
            ],
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
