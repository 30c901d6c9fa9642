"""Where Dataverse may be: the https origins of allowlisted Dataverse hosts (and loopback for the sandbox).

Tokens of the app's identity are sent only to these hosts; the settings, the admin routes and the Dataverse client
all ask here.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# ---- where Dataverse may be: the host allowlist -------------------------------------------------------------------
# A Dataverse org URL is ``https://<org>.<suffix>`` with exactly one label before one of these suffixes. Tokens of
# the app's identity are sent only there (``shared.dataverse.DataverseClient`` checks again before asking for one).
# Sources:
# - ``crm.dynamics.com`` and ``crm<N>.dynamics.com``: the commercial regions (NAM crm, SAM crm2, CAN crm3, EUR crm4,
#   APJ crm5, OCE crm6, JPN crm7, IND crm8, GBR crm11, FRA crm12, ZAF crm14, UAE crm15, GER crm16, CHE crm17, ...)
#   and US Government GCC (crm9): Microsoft's maintenance-window table, MicrosoftDocs/power-platform
#   ``power-platform/admin/policies-communications.md``, and the discovery server list in
#   microsoft/PowerPlatform-DataverseServiceClient ``src/GeneralTools/DataverseClient/Client/Model/DiscoveryServers.cs``
#   (which also lists crm19-crm21). New regions get new numbers, so any ``crm<1-99>`` is accepted.
# - ``crm.microsoftdynamics.us``: US Government GCC High (both sources above).
# - ``crm.appsplatform.us``: US Government DoD (DiscoveryServers.cs, "US Gov DoD").
# - ``crm.dynamics.cn``: China, operated by 21Vianet (both sources above).
# Not accepted: ``crm.microsoftdynamics.de`` (the German sovereign cloud, closed in 2021), and the portal's
# ``<org>.api.crm.dynamics.com`` form (enter the org URL ``<org>.crm.dynamics.com`` instead).
DATAVERSE_HOST_SUFFIXES: tuple[str, ...] = (
    "crm.dynamics.com",
    "crm<1-99>.dynamics.com",
    "crm.microsoftdynamics.us",
    "crm.appsplatform.us",
    "crm.dynamics.cn",
)
_ORG_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DATAVERSE_HOST = re.compile(
    rf"{_ORG_LABEL}\.(?:crm(?:[1-9][0-9]?)?\.dynamics\.com|crm\.microsoftdynamics\.us|crm\.appsplatform\.us"
    r"|crm\.dynamics\.cn)"
)
# The whole URL: a scheme, a host of DNS characters, at most a trailing slash. No userinfo, port, path, query,
# fragment, whitespace or percent-encoding can get through, whatever a URL parser would make of them.
_HTTPS_ORIGIN = re.compile(r"(?i:https)://([A-Za-z0-9.-]{1,253})/?")
_LOOPBACK_ORIGIN = re.compile(r"(?i:https?)://(127\.0\.0\.1|localhost|\[::1\])(?::([0-9]{1,5}))?/?")
DATAVERSE_URL_RULE = (
    "must be the https origin of a Dataverse org on an allowlisted host, e.g. https://contoso.crm.dynamics.com "
    "(hosts: *." + ", *.".join(DATAVERSE_HOST_SUFFIXES) + "; no user, port, path or IP address)"
)


def dataverse_origin(url: str, *, sandbox: bool = False) -> str:
    """The canonical origin (``https://<host>``, lower case) of a Dataverse org URL on the allowlist.

    Args:
        url: what an admin or a setting gave, e.g. ``https://Contoso.crm4.dynamics.com/``.
        sandbox: also accept a plain-http or https loopback origin with a port (``DATAVERSE_AUTH=none``: the
            stand-ins, where no token is ever sent).

    Raises:
        ValueError: anything else; the message states the rule, never echoing the value.
    """
    if not isinstance(url, str):
        raise ValueError(DATAVERSE_URL_RULE)
    if sandbox:
        loopback = _LOOPBACK_ORIGIN.fullmatch(url)
        if loopback and (loopback.group(2) is None or 0 < int(loopback.group(2)) < 65536):
            return url.rstrip("/").lower()
    match = _HTTPS_ORIGIN.fullmatch(url)
    host = match.group(1).lower() if match else ""
    if not _DATAVERSE_HOST.fullmatch(host):
        suffix = " (or a loopback URL in the sandbox)" if sandbox else ""
        raise ValueError(DATAVERSE_URL_RULE + suffix)
    return f"https://{host}"


def is_dataverse_host(url: str) -> bool:
    """True when ``url`` is the https origin of an allowlisted Dataverse host (what a token may be sent to)."""
    try:
        return dataverse_origin(url) == url.rstrip("/").lower()
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True for URLs whose host is a loopback address or ``localhost`` (the sandbox stand-ins)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
