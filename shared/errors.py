"""The error tree every part of the integration raises, classified by what the caller should do.

    IntegrationError
     +-- TransientError        retry later (5xx, timeouts, connection errors): raise so Service Bus redelivers
     |    +-- ThrottledError   the service asked us to slow down (429, ON24's 403 "maximum number of calls")
     |    +-- BusyError        another delivery holds the registration: try again shortly (not an outage)
     +-- PermanentError        retrying cannot help: record the reason and complete the message
     |    +-- CredentialsRejectedError   ON24 said 401/403 to the org's credentials
     |    +-- NotFoundError              the row or the webinar does not exist
     |    |    +-- SecretUnavailableError   a Key Vault secret version is missing, deleted or disabled
     |    +-- InvalidDataError           the service refused the data we sent as invalid
     |    +-- DecryptionError            a stored credential envelope cannot be opened
     +-- NotConfiguredError    the org has no ON24 credentials: the integration is disabled, skip quietly
     +-- ConfigError           the app itself is misconfigured (a setting is missing or malformed)

Clients translate httpx / azure-core exceptions into these at their edge (``raise ... from exc``);
nothing above the clients catches library exceptions. Messages name the org, registration, event
and cause, never a secret or a response body that could echo one.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error this integration raises on purpose."""


class TransientError(IntegrationError):
    """A fault that a later attempt may not meet: 5xx, timeouts, connection failures."""


class ThrottledError(TransientError):
    """The remote service asked us to slow down.

    Args:
        message: what was throttled, for logs.
        retry_after: seconds the service asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusyError(TransientError):
    """Another delivery holds the registration (its lease, or a quiet time): not a sign of an outage."""


class PermanentError(IntegrationError):
    """Retrying the same input cannot succeed; record the reason and move on."""


class CredentialsRejectedError(PermanentError):
    """ON24 rejected the org's credentials (401, or a 403 that is not throttling)."""


class NotFoundError(PermanentError):
    """The addressed resource does not exist (an ON24 event, a Dataverse row)."""


class SecretUnavailableError(NotFoundError):
    """A secret (or one version of it) cannot be read: missing, deleted, or disabled by an admin.

    Args:
        where: which secret and version.
        disabled: the version exists but is disabled.
    """

    def __init__(self, where: str, *, disabled: bool = False) -> None:
        super().__init__(where)
        self.disabled = disabled


class InvalidDataError(PermanentError):
    """The remote service refused the data we sent as invalid."""


class DecryptionError(PermanentError):
    """A stored credential envelope cannot be opened: tampered, moved to another org, or unknown key."""


class NotConfiguredError(IntegrationError):
    """The org has no ON24 credentials stored: the integration is disabled for it."""


class ConfigError(IntegrationError):
    """The app is misconfigured: a setting is missing or malformed. The message names the setting."""


__all__ = [
    "BusyError",
    "ConfigError",
    "CredentialsRejectedError",
    "DecryptionError",
    "IntegrationError",
    "InvalidDataError",
    "NotConfiguredError",
    "NotFoundError",
    "PermanentError",
    "SecretUnavailableError",
    "ThrottledError",
    "TransientError",
]
