"""The timers: PullMetrics (privacy housekeeping, then metrics, then reconciliations, then the health summaries) and
RetryParked, each run with one summary log line.

Each run first does the privacy housekeeping (``shared.privacy``: purges of orgs that left, expiry of rejected
bodies, retention of closed webinars' ledger rows) within ``HOUSEKEEPING_SHARE`` of the budget, then pulls
metrics for the rest of it. Reconciliations (``shared.reconcile.schedule``) come after the pull and only when it
left nothing for its next run, within what is left of the budget but ``HEALTH_RESERVE`` of it: they never take
time or ON24 list calls from the metrics pull.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING

from shared.app import App
from shared.errors import IntegrationError

if TYPE_CHECKING:  # each timer imports the use cases it runs when it first runs (a shorter cold start)
    from shared.health import HealthReport
    from shared.metrics import RunReport
    from shared.parking import RetryReport
    from shared.privacy import HousekeepingReport
    from shared.reconcile import TimerReport

_log = logging.getLogger(__name__)

HOUSEKEEPING_SHARE = 0.1  # of PULL_METRICS_BUDGET_SECONDS, at most; metrics get whatever housekeeping leaves
HEALTH_RESERVE = 0.1  # of the budget, kept after the reconciliations for the health summaries


def run_pull_metrics(app: App, *, past_due: bool = False) -> RunReport:
    """One timer run. Never raises for one org's trouble; storage or configuration faults do raise."""
    from shared.metrics import pull_metrics

    started = time.perf_counter()
    options = app.metrics_options()
    run_housekeeping(app, budget_seconds=options.budget_seconds * HOUSEKEEPING_SHARE)
    left = max(0.0, options.budget_seconds - (time.perf_counter() - started))
    report = pull_metrics(app.metrics_ports(), replace(options, budget_seconds=left))
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
            # A plain comma-separated string (org ids hold no comma): Application Insights stores a list's repr.
            "orgs_failed": ",".join(sorted(report.orgs_failed)),
            "left_for_next_run": report.left_for_next_run,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    if report.left_for_next_run == 0:
        left = options.budget_seconds * (1 - HEALTH_RESERVE) - (time.perf_counter() - started)
        run_reconciliations(app, deadline=time.monotonic() + left, skip_orgs=set(report.orgs_failed))
    refresh_org_health(app)
    return report


def run_reconciliations(app: App, *, deadline: float, skip_orgs: Collection[str] = ()) -> TimerReport | None:
    """The reconciliation step of a PullMetrics run (see the module docstring), with one summary line. A storage
    fault is logged, never fails the run: the pulls are done and saved, and the next run reconciles."""
    from shared import reconcile

    started = time.perf_counter()
    try:
        report = reconcile.run_reconciliations(
            app.reconcile_ports(), app.schedule_parts(), deadline=deadline, skip_orgs=skip_orgs
        )
    except IntegrationError as exc:
        _log.error("reconcile: step not run: %s", exc, extra={"error": type(exc).__name__})
        return None
    _log.info(
        "reconcile: %d webinars reconciled, %d left for the next run, %d failed, backfills asked for %d orgs",
        len(report.reconciled), report.left, len(report.failed), len(report.backfills),
        extra={"reconciled": len(report.reconciled), "reconcile_left": report.left,
               "reconcile_failed": ",".join(sorted(report.failed)), "backfills": ",".join(report.backfills),
               "duration_ms": round((time.perf_counter() - started) * 1000)},
    )  # fmt: skip
    return report


# ---- the health summaries the status route reads (after the pulls, in the same timer run) --------------------------
def refresh_org_health(app: App) -> HealthReport | None:
    """Bring the orgs' health summaries up to date. A failure is logged, never fails the run: the pulls are
    done and saved, and the next run counts again."""
    from shared.health import refresh_health

    started = time.perf_counter()
    try:
        report = refresh_health(app.health_ports())
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
            "health_orgs_failed": ",".join(sorted(report.failed)),
            "tokens_attention": ",".join(
                f"{org}:{token['state']}:{token['idleDays']}" for org, token in sorted(report.tokens.items())
            ),
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    return report


def run_housekeeping(app: App, *, budget_seconds: float) -> HousekeepingReport:
    """The privacy share of a timer run, with one summary line. Never raises (failures are in the report)."""
    from shared.privacy import housekeeping

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


def run_retry_parked(app: App) -> RetryReport:
    """One timer run, with one summary log line."""
    from shared.parking import retry_parked

    started = time.perf_counter()
    report = retry_parked(
        app.registration_ports(),
        app.credentials,
        app.parked,
        rejected=app.rejected,
        budget_seconds=app.settings.retry_parked_budget_seconds,
    )
    _log.info(
        "parked registrations: %s; %d orgs still unreachable, %d resumed, %d failed, %d set aside, %d dropped, "
        "%d left for the next run",
        ", ".join(f"{status} {count}" for status, count in sorted(report.outcomes.items())) or "none re-driven",
        len(report.orgs_still_unreachable),
        len(report.orgs_resumed),
        len(report.orgs_failed),
        report.set_aside,
        report.dropped,
        report.left_for_next_run,
        extra={
            **{f"parked_{status}": count for status, count in report.outcomes.items()},
            "orgs_still_unreachable": len(report.orgs_still_unreachable),
            "orgs_resumed": len(report.orgs_resumed),
            "parked_orgs_failed": sorted(report.orgs_failed),
            "parked_set_aside": report.set_aside,
            "parked_dropped": report.dropped,
            "left_for_next_run": report.left_for_next_run,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    return report
