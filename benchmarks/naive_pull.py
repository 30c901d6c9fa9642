"""The naive PullMetrics the benchmark compares against: one PATCH per check-in, no change detection.

What one would write first: read the webinar's ledger rows to match attendees, read every attendance page, and
upsert every matched attendee's check-in with its own PATCH, whether or not anything changed. It shares the
production ON24 and Dataverse clients and the check-in columns (so the comparison measures the approach, not the
HTTP stacks). Benchmark use only; never deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.app import App
from shared.crm import CHECKIN_SET, checkin_id
from shared.emailhash import MATCH_INDEX
from shared.metrics.checkins import Matcher, checkin_fields
from shared.metrics.index import MatchIndex
from shared.metrics.pull import MATCH_COLUMNS


@dataclass
class NaiveReport:
    pulled: int = 0
    patched: int = 0


def naive_pull(app: App, org_id: str, webinar_id: str, *, max_pages: int | None = None) -> NaiveReport:
    """Pull ``max_pages`` pages (all when None) of one webinar and PATCH every matched attendee's check-in."""
    org = app.credentials.get(org_id)
    assert org is not None, "the org's credentials are stored"
    provider = app.provider_for(org)
    crm_url = org.dataverse_url or app.settings.dataverse_url
    assert crm_url, "a Dataverse URL is configured"
    dataverse = app.dataverse(crm_url)
    rows = MatchIndex(org_id, webinar_id, 0, app.email_hashers(MATCH_INDEX))
    rows.refresh(app.ledger.entries(org_id, webinar_id=webinar_id, columns=MATCH_COLUMNS), now=datetime.now(UTC))
    matcher = Matcher(rows.email_key, rows.rows.values())
    report = NaiveReport()
    for page in provider.attendance_pages(webinar_id, start=None, end=None):
        if max_pages is not None and page.index >= max_pages:
            break
        for row in page.rows:
            report.pulled += 1
            entry = matcher.match(row)
            if entry is None:
                continue
            fields = checkin_fields(entry, row)
            dataverse.update_row(CHECKIN_SET, checkin_id(org_id, entry.registration_id), fields, must_exist=False)
            report.patched += 1
    return report
