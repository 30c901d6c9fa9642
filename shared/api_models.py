"""The admin API's answers as pydantic models: every route passes its answer through its model (``shape``), and
the OpenAPI description (``shared.openapi``) is generated from the same models, so the two cannot drift apart.

Models forbid unknown keys; a field a route leaves out stays out of the answer (``exclude_unset``), so the
answers keep their shape. Times are ISO 8601 strings (UTC); enum values never contain spaces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.fieldmap import FieldMapping

Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Counts = dict[str, int]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


M = TypeVar("M", bound=Model)


def shape(model: type[M], payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` checked against ``model`` and rendered as JSON values (a mismatch is a bug: 500, logged)."""
    return model.model_validate(payload).model_dump(mode="json", by_alias=True, exclude_unset=True)


# ---- errors ------------------------------------------------------------------------------------------------------
class ErrorDetail(Model):
    """The Microsoft REST API guidelines' error object."""

    code: str = Field(description="stable machine-readable code (docs/admin-api.md gives each one's HTTP status)")
    message: str = Field(description="what happened and what to do, for a person")
    target: str | None = Field(default=None, description="the request field at fault, when one is")
    field: str | None = Field(default=None, description="deprecated: the same value as target", deprecated=True)


class ErrorResponse(Model):
    error: ErrorDetail


class WarningItem(Model):
    code: str = Field(description="stable code, e.g. token_expiring, registrations_failed")
    message: str


# ---- credentials -------------------------------------------------------------------------------------------------
class MetricsRun(Model):
    status: Literal["ok", "error"] | None
    reason: str | None
    at: Time | None


class PurgeView(Model):
    status: Literal["running", "deleted"]
    requested_at: Time = Field(alias="requestedAt")
    requested_by: str = Field(alias="requestedBy")
    deleted: Counts = Field(description="rows deleted so far, per part of the org's state")
    final_check_after: Time = Field(alias="finalCheckAfter")


class UnreadableMapping(Model):
    error: str = Field(description="the stored field mapping cannot be read: PUT it again")


class CredentialsSummary(Model):
    """The non-secret state of an org's credentials (the status route's ``credentials``)."""

    attention: str | None = Field(default=None, description="credentials stored under another spelling of orgId")
    status: Literal["active", "rejected"] | None = None
    status_reason: str | None = Field(default=None, alias="statusReason")
    account_id: str | None = Field(default=None, alias="clientId")
    region: str | None = None
    dataverse_url: str | None = Field(default=None, alias="dataverseUrl")
    webinar_ids: list[str] | None = Field(default=None, alias="webinarIds")
    key_version: str | None = Field(default=None, alias="keyVersion")
    updated_at: Time | None = Field(default=None, alias="updatedAt")
    updated_by: str | None = Field(default=None, alias="updatedBy")
    metrics: MetricsRun | None = None
    field_mapping: FieldMapping | UnreadableMapping | None = Field(
        default=None, alias="fieldMapping", description="the org's field mapping as saved (not a secret)"
    )


class CredentialsView(CredentialsSummary):
    """``GET``/``PUT .../webinar/credentials``: ``configured`` false carries only ``orgId`` (and ``attention``)."""

    org_id: str = Field(alias="orgId")
    configured: bool
    purge: PurgeView | None = None


class CredentialsInputOrg(Model):
    """The org's part of the ``PUT`` body (beside the provider's fields)."""

    dataverse_url: str | None = Field(default=None, alias="dataverseUrl", max_length=300)
    webinar_ids: list[str] = Field(default_factory=list, alias="webinarIds", max_length=200)
    field_mapping: FieldMapping | None = Field(default=None, alias="fieldMapping")


class OperationLink(Model):
    id: str
    href: str = Field(description="the operation to poll (also the Location header)")


class RemovedView(Model):
    """``DELETE .../webinar/credentials`` (``?purge=true``: with the purge, and its operation while it runs)."""

    org_id: str = Field(alias="orgId")
    removed: bool
    configured: Literal[False]
    account_id: str | None = Field(alias="clientId")
    region: str | None
    integration: Literal["disabled"]
    purge: PurgeView | None = None
    operation: OperationLink | None = None


# ---- pull, forget, operations ----------------------------------------------------------------------------------
class PullDone(Model):
    org_id: str = Field(alias="orgId")
    webinar_id: str = Field(alias="webinarId")
    status: Literal["ok"]
    counts: Counts


class PullAccepted(Model):
    org_id: str = Field(alias="orgId")
    webinar_id: str = Field(alias="webinarId")
    status: Literal["in_progress"]
    counts: Counts
    message: str
    operation: OperationLink


class ForgottenRegistration(Model):
    registration_id: str = Field(alias="registrationId")
    outcome: str = Field(description="forgotten, duplicate (erased already), stale, ...")
    reason: str | None = None


class ForgetView(Model):
    org_id: str = Field(alias="orgId")
    erasure_id: str = Field(alias="erasureId")
    registrations_found: int = Field(alias="registrationsFound")
    registrations: list[ForgottenRegistration]
    rejected_messages_deleted: int = Field(alias="rejectedMessagesDeleted")
    parked_messages_deleted: int = Field(alias="parkedMessagesDeleted")


class OperationView(Model):
    """``GET .../operations/{operationId}``: 202 while ``running``, 200 once ``succeeded`` or ``failed``."""

    id: str
    org_id: str = Field(alias="orgId")
    kind: Literal["pull", "purge", "reconcile"]
    status: Literal["running", "succeeded", "failed"]
    webinar_id: str | None = Field(alias="webinarId")
    created_at: Time = Field(alias="createdAt")
    finished_at: Time | None = Field(alias="finishedAt")
    result: dict[str, Any] | None = Field(
        description="pull: webinarId and counts; purge: rows deleted per part; reconcile: webinarId, counts, repairs"
    )
    error: ErrorDetail | None


# ---- status ------------------------------------------------------------------------------------------------------
class TokenView(Model):
    last_successful_use: Time | None = Field(alias="lastSuccessfulUse")
    idle_days: int | None = Field(alias="idleDays")
    warn_from_days: int = Field(alias="warnFromDays")
    disabled_after_days: int = Field(alias="disabledAfterDays")
    state: Literal["ok", "warning", "expired", "rejected", "unknown"]
    message: str | None


class PendingPull(Model):
    from_: Time | None = Field(alias="from")
    to: Time | None
    next_page: int = Field(alias="nextPage")


class NotFound(Model):
    checks: int = Field(description="consecutive answers of ON24 that it has no such webinar")
    since: Time | None = Field(description="the first of them")
    next_check: Time | None = Field(alias="nextCheck")


class ReconcileCounts(Model):
    """Persons per class (``docs/reconciliation.md``); ``forgotten``: active CRM registrations of forgotten persons."""

    missing_at_provider: int = Field(alias="missingInOn24")
    gone_in_crm: int = Field(alias="goneInCrm")
    different: int
    not_ours: int = Field(alias="notOurs")
    agreed: int
    forgotten: int


class DriftIds(Model):
    """CRM registration ids of the drifting registrations (at most 1,000 per class); never an email."""

    missing_at_provider: list[str] = Field(alias="missingInOn24")
    gone_in_crm: list[str] = Field(alias="goneInCrm")
    different: list[str]


class ReconcileRequest(Model):
    at: Time | None
    repair: bool
    by: str | None


class ReconcileRepair(Model):
    at: Time | None
    by: str | None
    outcomes: Counts = Field(description="re-driven registrations by outcome (registered, cancelled, deferred, ...)")


class ReconciliationView(Model):
    """A webinar's last reconciliation on the status route."""

    last_reconciled_at: Time | None = Field(alias="lastReconciledAt")
    counts: ReconcileCounts | None
    drift: int | None
    requested: ReconcileRequest | None
    last_repair: ReconcileRepair | None = Field(alias="lastRepair")
    last_error: str | None = Field(alias="lastError")
    ids: DriftIds | None = Field(default=None, description="only with ?driftIds=true")


class ReconcileCalls(Model):
    provider_list_pages: int = Field(alias="on24ListPages")
    crm_pages: int = Field(alias="crmPages")


class ReconcileDone(Model):
    """``POST .../reconcile`` that finished within the request."""

    org_id: str = Field(alias="orgId")
    webinar_id: str = Field(alias="webinarId")
    status: Literal["done", "repaired_unchecked"]
    reconciled_at: Time | None = Field(alias="reconciledAt")
    counts: ReconcileCounts
    drift: int
    repairs: Counts | None
    calls: ReconcileCalls
    ids: DriftIds | None = Field(default=None, description="only with ?driftIds=true")


class ReconcileAccepted(Model):
    """``POST .../reconcile`` that the PullMetrics timer finishes: poll the operation."""

    org_id: str = Field(alias="orgId")
    webinar_id: str = Field(alias="webinarId")
    status: Literal["in_progress"]
    repair: bool
    message: str
    operation: OperationLink


class WebinarView(Model):
    webinar_id: str = Field(alias="webinarId")
    status: Literal["never_pulled", "ok", "in_progress", "error", "not_found", "gone"]
    last_pull: Time | None = Field(alias="lastPull")
    last_attempt: Time | None = Field(alias="lastAttempt")
    next_due: Time | None = Field(alias="nextDue")
    pending: PendingPull | None
    counts: Counts
    last_error: str | None = Field(alias="lastError")
    live_start: Time | None = Field(alias="liveStart")
    pull_until: Time | None = Field(alias="pullUntil")
    not_found: NotFound | None = Field(default=None, alias="notFound")
    reconciliation: ReconciliationView | None = None


class Failure(Model):
    registration_id: str = Field(alias="registrationId")
    at: Time | None
    reason: str


class Parking(Model):
    failed_attempts: int = Field(alias="failedAttempts")
    next_attempt: Time | None = Field(alias="nextAttempt")


class RegistrationsView(Model):
    counted_at: Time | None = Field(alias="countedAt")
    last24h: dict[str, int | None] = Field(description="outcomes of the last 24 hours; null: not counted yet")
    total: dict[str, int | None] = Field(description="registrations by last outcome; null: not counted yet")
    at_provider: int | None = Field(alias="inOn24")
    recent_failures: list[Failure] = Field(alias="recentFailures")
    parking: Parking | None


class LatestRejected(Model):
    at: Time | None
    reason: str | None


class RejectedView(Model):
    total: int
    waiting: int
    last24h: int
    latest: LatestRejected | None


class StatusView(Model):
    org_id: str = Field(alias="orgId")
    as_of: Time = Field(alias="asOf")
    configured: bool
    credentials: CredentialsSummary
    token: TokenView | None
    webinars: list[WebinarView]
    registrations: RegistrationsView
    rejected_messages: RejectedView = Field(alias="rejectedMessages")
    warnings: list[WarningItem]
