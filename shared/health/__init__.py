"""Per-org health: what ``GET /api/orgs/{orgId}/webinar/status`` answers, and the summary PullMetrics keeps for it.

An admin must be able to tell whether the integration works for their org without reading logs. The answer
is built from rows that exist anyway, plus one summary row per org, so a status call costs a handful of
point reads and small queries, and reads the ledger only when it changed since its last count:

- the org row (credentials' state, the last metrics run, when the credentials were last checked by ON24);
- the org's sync-state rows (per webinar: last pull, next due, unfinished pull, counts, last error);
- the org's summary row (``shared.store.health``): registrations by outcome, the 5 most recent failures,
  the webinars registered to, the newest registration ON24 accepted, and the rejected messages filed under
  the org;
- the org's parked registrations (a range query bounded by their number, normally none).

The registration counts are brought up to date by the status route itself when the ledger changed since they
were counted (``current_health``: one question to the ledger, and a recount only when it did), so the answer is
right at once after setup. The summary is also kept by ``refresh_health``, which PullMetrics runs after its
pulls. Per org it asks the ledger one question, "did any registration record something since my last pass?", and
only when it did, brings the org's count tally (``shared.health.tally``) up to date with the rows written since and
writes the row. The tally keeps each registration's contribution and replaces it, never adds to it, so the
counts stay exact whatever happened in between (a ledger row holds only its latest outcome; redeliveries and
lease extensions rewrite rows without a new outcome). A quiet org costs one query per run; a busy org reads the
rows written since, never its partition after the first count. RegisterAttendee's hot path gains no Table
Storage call.

The ON24 token's last successful use is the newest of: the credentials' last check at ``PUT`` (the row is
saved only after ON24 accepted them), the webinars' last answered pulls, and the newest registration ON24
accepted (from the summary). All three are recorded by writes that happen anyway; nothing is written per
message. ON24 disables a token unused for 60 days; the status warns from 45.
"""

from shared.health.counting import (
    CHANGE_OVERLAP,
    COUNT_COLUMNS,
    count_registrations,
    count_rejected,
    hour_key,
    last_day,
    outcome_of,
)
from shared.health.status import (
    ParkedCounts,
    StatusPorts,
    org_status,
    parked_counts,
    provider_contact,
    status_view,
    token_view,
)
from shared.health.summary import HealthPorts, HealthReport, refresh_health

__all__ = [
    "CHANGE_OVERLAP",
    "COUNT_COLUMNS",
    "HealthPorts",
    "HealthReport",
    "ParkedCounts",
    "StatusPorts",
    "count_registrations",
    "count_rejected",
    "hour_key",
    "last_day",
    "org_status",
    "outcome_of",
    "parked_counts",
    "provider_contact",
    "refresh_health",
    "status_view",
    "token_view",
]
