"""A pull that spans timer runs, over an attendee list that shifts between the runs.

ON24 filters the attendee list on last activity inside the pull's window and pages it. When an attendee's
activity moves past the window's end between two runs, every later attendee moves up one place: a pull
that resumes by page index alone then never sees the attendee that slid onto the page it already read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.app import get_app
from shared.crm import checkin_id
from shared.metrics import MetricsOptions, RunReport, pull_metrics
from tests.e2e.test_pull_metrics import ORG_A, Webinars

CHECKINS = "msevtmgt_checkins"
WEBINAR = 7001


@pytest.fixture
def tenant(app_env: dict[str, str], on24: Any, dataverse: Any) -> Webinars:
    return Webinars(on24, dataverse)


def run(*, at: datetime, budget: float | None = None, lookback: timedelta | None = None) -> RunReport:
    """One timer run with the clock at ``at``; with ``budget``, every look at the monotonic clock costs a second."""
    app = get_app()
    monotonic: Callable[[], float]
    if budget is None:
        monotonic = __import__("time").monotonic
    else:
        ticks = iter(range(100_000))
        monotonic = lambda: float(next(ticks))  # noqa: E731
    ports = replace(app.metrics_ports(), clock=lambda: at, monotonic=monotonic)
    options = app.metrics_options()
    if budget is not None:
        options = MetricsOptions(**{**options.__dict__, "budget_seconds": budget})
    if lookback is not None:
        options = MetricsOptions(**{**options.__dict__, "lookback": lookback})
    return pull_metrics(ports, options)


def written(w: Webinars, emails: list[str], dataverse: Any) -> set[str]:
    return {e for e in emails if dataverse.row(CHECKINS, checkin_id(ORG_A, w.regs[e])) is not None}


def test_a_list_that_shifts_between_runs_skips_no_attendee(tenant: Webinars, dataverse: Any, on24: Any) -> None:
    w = tenant
    emails = [f"s{i:03}@a.example" for i in range(250)]  # three ON24 pages of 100, in registration order
    for email in emails:
        w.register(ORG_A, WEBINAR, email)
        w.watch(WEBINAR, email, live=7)
    first_run = datetime.now(UTC)

    report = run(at=first_run, budget=2)  # the budget runs out after the first page
    assert [r.status for r in report.webinars] == ["partial"]
    assert written(w, emails, dataverse) == set(emails[:100])
    pending = get_app().sync_state.get(ORG_A, str(WEBINAR))
    assert pending is not None and pending.pending_end is not None and pending.pending_start is not None

    # Between the runs attendee #10 (already written, on page 0) watches again: their last activity moves past
    # the pending window's end, they leave the filtered list, and every attendee after them moves up one place.
    on24.set_attendee(
        WEBINAR,
        emails[10],
        archiveminutes=30,
        firstarchiveactivity=first_run - timedelta(minutes=25),
        lastarchiveactivity=first_run + timedelta(minutes=5),
    )

    resumed = run(at=first_run + timedelta(minutes=15))
    assert [r.status for r in resumed.webinars] == ["ok"]
    assert written(w, emails, dataverse) == set(emails), "no attendee is skipped"
    done = get_app().sync_state.get(ORG_A, str(WEBINAR))
    assert done is not None and done.pending_end is None
    assert done.replication_key_value is not None and done.replication_key_value <= pending.pending_start, (
        "after a pull that spanned runs the bookmark does not pass the start of the window it resumed"
    )

    # Later runs (the way the issue saw it: +2 h, +30 h, +60 h) keep everything and pick up #10's new minutes.
    for hours in (2, 30, 60):
        run(at=first_run + timedelta(hours=hours))
        assert written(w, emails, dataverse) == set(emails)
    moved = dataverse.row(CHECKINS, checkin_id(ORG_A, w.regs[emails[10]]))
    assert moved["msevtmgt_viewingdurationinmins"] == 37
    assert len(dataverse.rows(CHECKINS)) == 250, "re-reading pages never duplicates a check-in"


def test_a_list_that_grows_behind_the_cursor_is_caught_by_the_next_pull(
    tenant: Webinars, dataverse: Any, on24: Any
) -> None:
    """Late ON24 data: an attendee appears inside the window, on a page the resumed pull has already passed.

    With no look-back (METRICS_LOOKBACK_HOURS=0) only the bookmark rule brings the next pull back over it.
    """
    w = tenant
    emails = [f"g{i:03}@a.example" for i in range(150)]
    for email in emails:
        w.register(ORG_A, WEBINAR, email)
    for email in emails[1:]:
        w.watch(WEBINAR, email, live=4)
    first_run = datetime.now(UTC)
    none = timedelta(0)
    assert run(at=first_run, budget=2, lookback=none).webinars[0].status == "partial"

    w.watch(WEBINAR, emails[0], live=9)  # registered first, so listed first; its activity lies inside the window
    run(at=first_run + timedelta(minutes=15), lookback=none)
    run(at=first_run + timedelta(minutes=30), lookback=none)
    assert written(w, emails, dataverse) == set(emails)
