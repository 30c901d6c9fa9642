"""The composition root's reconciliation part (``App`` inherits it): the reconciliation rows, the repair pacing,
and the ports of ``shared.reconcile``. Kept apart so that ``shared.app`` stays one screenful per concern."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shared.app_core import AppCore
from shared.once import built_once

if TYPE_CHECKING:
    from shared.crm import Crm
    from shared.metrics import MetricsOptions
    from shared.ratelimit import RateLimiter
    from shared.reconcile import ReconcilePorts, ScheduleParts
    from shared.store import OrgRecord
    from shared.store.reconciliations import ReconcileStore
    from shared.webinars import WebinarProvider


class _App(AppCore, Protocol):
    """What the reconciliation part uses of ``App`` beyond ``AppCore``."""

    @property
    def reconciliations(self) -> ReconcileStore: ...
    @property
    def repair_limiter(self) -> RateLimiter: ...
    def metrics_options(self) -> MetricsOptions: ...
    def provider_for(self, org: OrgRecord, pacing: RateLimiter | None = None) -> WebinarProvider: ...
    def crm_for(self, org: OrgRecord) -> Crm | None: ...
    def attendee_limiter(self, org: OrgRecord) -> RateLimiter: ...


class ReconcileParts:
    @built_once
    def reconciliations(self: _App) -> ReconcileStore:
        """Each webinar's reconciliation row (``<prefix>syncstate``, rows ``~reconcile|<webinar>``)."""
        from shared.store.reconciliations import ReconcileStore

        return ReconcileStore(self.tables.table("syncstate"))

    @built_once
    def repair_limiter(self: _App) -> RateLimiter:
        """Paces the registrations a repair re-drives (``RECONCILE_REPAIRS_PER_MINUTE``), one per process."""
        from shared.ratelimit import RateLimiter

        return RateLimiter(self.settings.reconcile_repairs_per_minute, 60.0)

    def reconcile_ports(self: _App) -> ReconcilePorts:
        from shared.reconcile import ReconcilePorts

        return ReconcilePorts(
            orgs=self.credentials,
            ledger=self.ledger,
            states=self.reconciliations,
            provider_for=self.provider_for,
            limiter_for=self.attendee_limiter,
            crm_for=self.crm_for,
            forgotten_in=self.tombstones.checker,
            registration=self.registration_ports(),
            repair_limiter=self.repair_limiter,
            calls_per_minute=self.metrics_options().attendee_calls_per_minute,
        )

    def schedule_parts(self: _App) -> ScheduleParts:
        from shared.reconcile import ScheduleParts

        return ScheduleParts(
            orgs=self.credentials, sync=self.sync_state, ledger=self.ledger, states=self.reconciliations
        )
