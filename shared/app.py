"""The composition root: builds settings and clients once per worker process and reuses them.

Function folders call ``get_app()``; tests call ``reset_app()`` after changing the environment, or build
``App(settings, ...)`` with overrides. Everything is built lazily, so a function that needs only the
org table (RemoveCredentials) keeps working even when, say, Key Vault is misconfigured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx
from azure.core.credentials import TokenCredential

from shared import telemetry
from shared.app_privacy import PrivacyParts
from shared.app_reconcile import ReconcileParts
from shared.credentials import open_secrets
from shared.crm import Crm
from shared.crypto import CredentialCipher, KeyProvider, KeyVaultKeyProvider, LocalKeyProvider
from shared.dataverse import DataverseClient
from shared.dataverse_hosts import is_loopback_url
from shared.errors import ConfigError
from shared.on24 import On24Client, On24Credentials
from shared.on24.provider import CredentialsBody, On24Provider, credentials_of
from shared.once import built_once
from shared.ratelimit import RateLimiter
from shared.registration import RegistrationPorts
from shared.registration.rules import Backoff
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.store import CredentialStore, OrgRecord, StateTables
from shared.store.ledger import Ledger
from shared.store.parked import ParkedMessages
from shared.webinars import ProviderCredentials

if TYPE_CHECKING:  # feature modules are imported where they are wired: a function loads only what it runs
    from shared.health import HealthPorts, StatusPorts
    from shared.metrics import MetricsOptions, MetricsPorts
    from shared.store.blobs import MatchIndexes
    from shared.store.health import HealthStore
    from shared.store.pacing import SharedRateLimiter
    from shared.store.rejected import RejectedMessages
    from shared.store.sync_state import SyncStateStore

_log = logging.getLogger(__name__)

# Our clients log one line per call with ids; the libraries' own per-request INFO lines would double the
# Application Insights volume and cost measurable CPU per message. Their warnings still get through.
for _noisy in ("azure.core.pipeline.policies.http_logging_policy", "httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

# An admin waits on the HTTP response: retry a blip briefly, then answer 503 rather than hang.
ADMIN_RETRY = RetryPolicy(budget=3.0, base_delay=0.2, max_delay=1.0, max_attempts=3)
HTTP_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=60.0)


class App(PrivacyParts, ReconcileParts):
    """Long-lived clients for one worker process. Thread-safe to share across invocations."""

    def __init__(
        self,
        settings: Settings,
        *,
        key_provider: KeyProvider | None = None,
        azure_credential: TokenCredential | None = None,
        http_client: httpx.Client | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock  # tests run RegisterAttendee and RetryParked on a virtual clock
        self._sleep = sleep  # waits for an ON24 slot (None: real ones, or none at all on a virtual clock)
        self._key_provider = key_provider
        self._azure_credential = azure_credential
        self._http_client = http_client
        self._lock = threading.Lock()
        self._build_lock = threading.RLock()  # a client's build may need another (tables -> identity)
        self._closers: list[Any] = []
        self._dataverse: dict[str, DataverseClient] = {}
        self._blob_service: Any = None
        self._limiters: dict[str, SharedRateLimiter] = {}

    # ---- identity ----------------------------------------------------------------------------
    @built_once
    def azure_credential(self) -> TokenCredential:
        """DefaultAzureCredential (managed identity in Azure), created on first use."""
        if self._azure_credential is None:
            from azure.identity import DefaultAzureCredential

            self._azure_credential = DefaultAzureCredential()
            self._closers.append(self._azure_credential)
        return self._azure_credential

    # ---- state -------------------------------------------------------------------------------
    @built_once
    def tables(self) -> StateTables:
        s = self.settings
        tables = StateTables.connect(
            connection_string=s.state_connection,
            account_url=s.state_account_url,
            credential=None if s.state_connection else self.azure_credential,
            prefix=s.table_prefix,
        )
        self._closers.append(tables)
        return tables

    @built_once
    def credentials(self) -> CredentialStore:
        return CredentialStore(self.tables.table("orgs"))

    @built_once
    def sync_state(self) -> SyncStateStore:
        from shared.store.sync_state import SyncStateStore

        return SyncStateStore(self.tables.table("syncstate"))

    @built_once
    def ledger(self) -> Ledger:
        return Ledger(self.tables.table("ledger"))

    @built_once
    def parked(self) -> ParkedMessages:
        """Registrations parked during an outage (``shared.parking`` re-drives them)."""
        return ParkedMessages(self.tables.table("ledger"))

    @built_once
    def rejected(self) -> RejectedMessages:
        """Unparseable queue messages, kept whole (large bodies in Blob Storage, connected on first need)."""
        from shared.store.rejected import RejectedMessages

        return RejectedMessages(self.tables.table("ledger"), lambda: self._blob_container("rejected"))

    @built_once
    def match_indexes(self) -> MatchIndexes:
        """Each webinar's match index for PullMetrics (``<prefix>metrics`` container)."""
        from shared.store.blobs import MatchIndexes

        return MatchIndexes(lambda: self._blob_container("metrics"))

    def _blob_container(self, suffix: str) -> Any:
        """The ``<prefix><suffix>`` container; Blob Storage is connected on first need (its SDK is slow to import)."""
        from shared.store.blobs import connect

        s = self.settings
        with self._lock:
            if self._blob_service is None:
                credential = None if s.state_connection else lambda: self.azure_credential
                self._blob_service = connect(s.state_connection, s.state_blob_url, credential)
                self._closers.append(self._blob_service)
            return self._blob_service.get_container_client(s.table_prefix.lower() + suffix)

    @built_once
    def health(self) -> HealthStore:
        """Each org's health summary (for the status route), kept by PullMetrics."""
        from shared.store.health import HealthStore

        return HealthStore(self.tables.table("syncstate"))

    def attendee_limiter(self, org: OrgRecord) -> RateLimiter:
        """The ON24 account's attendee-list pacing, shared with every instance (one per account per process)."""
        from shared.store.pacing import SharedRateLimiter

        with self._lock:
            limiter = self._limiters.get(org.account_id)
            if limiter is None:
                limiter = SharedRateLimiter(
                    self.tables.table("syncstate"), org.account_id, self.settings.on24_attendee_calls_per_minute
                )
                self._limiters[org.account_id] = limiter
            return limiter

    def registrant_pacer(self, org: OrgRecord, kind: Literal["registrant", "forget"]) -> SharedRateLimiter:
        """The ON24 account's registrant-write or forget pacing, shared with every instance (issue 22)."""
        from shared.store.pacing import account_pacer

        s, key, account = self.settings, f"{org.account_id}|{kind}", org.account_id
        calls = s.on24_forget_calls_per_minute if kind == "forget" else s.on24_registrant_calls_per_minute
        with self._lock:
            if key not in self._limiters:
                table, window = self.tables.table("syncstate"), s.on24_pace_window_seconds
                self._limiters[key] = account_pacer(table, account, kind, calls, window, self._clock, self._sleep)
            return self._limiters[key]

    def registration_ports(self) -> RegistrationPorts:
        """RegisterAttendee's clients, and its timing derived from the settings (see ``Settings``)."""
        s = self.settings
        ports = RegistrationPorts(
            credentials=self.credentials,
            ledger=self.ledger,
            provider_for=self.provider_for,
            crm_for=self.crm_for,
            lease_seconds=s.registration_lease_seconds,
            call_seconds=s.on24_call_seconds,
            linger_seconds=s.on24_linger_seconds,
            lease_margin_seconds=s.registration_lease_margin_seconds,
            lease_wait_seconds=s.registration_lease_wait_seconds,
            parked=self.parked,
            park_after_deliveries=s.park_after_deliveries,
            backoff=Backoff(s.park_backoff_base_seconds, s.park_backoff_max_seconds),
            tombstones=self.tombstones,
            pacer_for=self.registrant_pacer,
            pace_wait_seconds=s.registration_pace_wait_seconds,
        )
        return ports if self._clock is None else replace(ports, clock=self._clock)

    # ---- PullMetrics, the status route --------------------------------------------------------
    def metrics_options(self) -> MetricsOptions:
        from shared.metrics import MetricsOptions

        s = self.settings
        return MetricsOptions(
            budget_seconds=s.metrics_budget_seconds,
            grace=timedelta(days=s.metrics_grace_days),
            lookback=timedelta(hours=s.metrics_lookback_hours),
            attendee_calls_per_minute=s.on24_attendee_calls_per_minute,
        )

    def metrics_ports(self) -> MetricsPorts:
        """The metrics use case's ports wired to the app's stores and clients (tests replace the clocks)."""
        from shared.emailhash import MATCH_INDEX
        from shared.metrics import MetricsPorts

        return MetricsPorts(
            orgs=self.credentials,
            ledger=self.ledger,
            sync=self.sync_state,
            provider_for=self.provider_for,
            crm_for=self.crm_for,
            indexes=self.match_indexes,
            email_hasher=lambda: self.email_hashers(MATCH_INDEX),
            limiter_for=self.attendee_limiter,
        )

    def health_ports(self) -> HealthPorts:
        from shared.health import HealthPorts

        return HealthPorts(
            orgs=self.credentials,
            ledger=self.ledger,
            rejected=self.rejected,
            rows=self.health,
            sync=self.sync_state,
            tallies=self.match_indexes,
        )

    def status_ports(self) -> StatusPorts:
        from shared.health import StatusPorts

        return StatusPorts(
            credentials=self.credentials,
            sync=self.sync_state,
            rows=self.health,
            parked=self.parked,
            ledger=self.ledger,
            tallies=self.match_indexes,
            reconciliations=self.reconciliations,
        )

    # ---- crypto ------------------------------------------------------------------------------
    @built_once
    def key_provider(self) -> KeyProvider:
        if self._key_provider is not None:
            return self._key_provider
        s = self.settings
        if s.key_vault_url and s.credentials_key_secret_name:
            from shared.keyvault import KeyVaultSecretSource, StaticTokenCredential

            credential: TokenCredential = (
                StaticTokenCredential() if s.key_vault_auth == "none" else self.azure_credential
            )
            source = KeyVaultSecretSource.connect(s.key_vault_url, credential)
            self._closers.append(source)
            return KeyVaultKeyProvider(source, s.credentials_key_secret_name, refresh_seconds=s.key_refresh_seconds)
        if s.credentials_key is not None:
            if s.running_in_azure and not s.allow_local_key_in_azure:
                raise ConfigError(
                    "setting CREDENTIALS_KEY is refused in Azure: configure KEY_VAULT_URL and "
                    "CREDENTIALS_KEY_SECRET_NAME (or set ALLOW_LOCAL_CREDENTIALS_KEY=true knowingly)"
                )
            return LocalKeyProvider(s.credentials_key.get_secret_value())
        raise ConfigError(
            "no credentials key configured: set KEY_VAULT_URL and CREDENTIALS_KEY_SECRET_NAME "
            "(production) or CREDENTIALS_KEY (base64 of 32 bytes, development only)"
        )

    @built_once
    def cipher(self) -> CredentialCipher:
        return CredentialCipher(self.key_provider)

    @built_once
    def retry_policy(self) -> RetryPolicy:
        """How long a function retries ON24/Dataverse blips before letting the platform retry (RETRY_BUDGET_SECONDS).

        Keep it well below the Service Bus lock duration and the function timeout.
        """
        return RetryPolicy(budget=self.settings.retry_budget_seconds)

    # ---- the webinar provider: ON24 -----------------------------------------------------------------
    @built_once
    def http(self) -> httpx.Client:
        """One connection pool for all outbound REST calls of this worker."""
        if self._http_client is None:
            self._http_client = httpx.Client(limits=HTTP_LIMITS, timeout=httpx.Timeout(10.0, connect=5.0))
            self._closers.append(self._http_client)
        return self._http_client

    credentials_fields: type[CredentialsBody] = CredentialsBody
    """The provider's part of the admin's credentials body."""

    def provider_for(self, org: OrgRecord, pacing: RateLimiter | None = None) -> On24Provider:
        """The webinar provider account of an org row: opens its envelope (DecryptionError if it cannot).

        ``pacing`` paces attendee-list calls (ON24 allows 100 a minute); one is shared per account per run.
        """
        credentials = credentials_of(org.account_id, org.region, open_secrets(self.cipher, org))
        mode = None if self.settings.on24_attendee_date_filter == "default" else "lastActivity"
        return On24Provider(self._on24(credentials, retry=self.retry_policy, pacing=pacing), date_filter_mode=mode)

    def verify_credentials(self, offered: ProviderCredentials) -> None:
        """One cheap authenticated call with credentials an admin offers; raises CredentialsRejectedError or
        TransientError."""
        assert isinstance(offered, CredentialsBody)
        self._on24(offered.credentials(), retry=ADMIN_RETRY).check_credentials()

    def _on24(
        self, credentials: On24Credentials, *, retry: RetryPolicy, pacing: RateLimiter | None = None
    ) -> On24Client:
        """An ON24 client for one org's credentials, on the shared connection pool (cheap to build)."""
        return On24Client(
            credentials,
            base_url=self.settings.on24_base_url,
            http_client=self.http,
            retry=retry,
            timeout=self.settings.on24_timeout_seconds,
            attendee_rate_limiter=pacing,
        )

    # ---- Dataverse ---------------------------------------------------------------------------
    def dataverse(self, url: str) -> DataverseClient:
        """The Dataverse client for an org URL (one per URL per process: it caches its token)."""
        with self._lock:
            client = self._dataverse.get(url)
            if client is None:
                sandbox = self.settings.dataverse_auth == "none" and is_loopback_url(url)
                credential = None if sandbox else self.azure_credential
                client = DataverseClient(url, credential, http_client=self.http, retry=self.retry_policy)
                self._dataverse[url] = client
            return client

    def dataverse_attributes(self, url: str, table: str) -> list[dict[str, Any]]:
        """A table's column metadata at an org URL (a field mapping is checked against it when saved)."""
        return self.dataverse(url).attributes(table)

    def crm_for(self, org: OrgRecord) -> Crm | None:
        """Event management in the org's own Dataverse URL, else DATAVERSE_URL; None when neither is known."""
        url = org.dataverse_url or self.settings.dataverse_url
        return Crm(self.dataverse(url)) if url else None

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer.close()
            except Exception:
                _log.debug("error while closing %r", closer, exc_info=True)
        self._closers.clear()


_app: App | None = None
_app_lock = threading.Lock()


def get_app() -> App:
    """The process-wide App, built from the environment on first use."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                telemetry.configure()  # OpenTelemetry export, only with APPLICATIONINSIGHTS_CONNECTION_STRING
                _app = App(Settings.from_environ())
    return _app


def set_app(app: App | None) -> None:
    """Replace the process-wide App (tests and the sandbox); closes the previous one."""
    global _app
    with _app_lock:
        previous, _app = _app, app
    if previous is not None and previous is not app:
        previous.close()


def reset_app() -> None:
    """Forget the process-wide App so the next ``get_app()`` re-reads the environment."""
    set_app(None)
