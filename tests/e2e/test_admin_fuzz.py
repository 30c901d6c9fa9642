"""Admin routes fuzzed with hypothesis: whatever the body, org id or headers, never a 500 and never a secret.

A local, function-based harness: each example calls the function folder's ``main`` with a ``func.HttpRequest``;
the only network is the stand-ins on 127.0.0.1 (Azurite, Key Vault, ON24). Each route gets 2,000 examples,
half with App Service authentication (and the per-org scope) on. Token values carry a marker, so a secret that
leaks in any form, whole or cut, shows up in a response or a log line. Examples are derandomised (the same
every run) so CI is stable; widen ``FUZZ_EXAMPLES`` locally to explore further.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from CredentialsStatus import main as status_main
from PullWebinar import main as pull_webinar_main
from RemoveCredentials import main as remove_main
from shared.app import App, reset_app, set_app
from shared.settings import Settings
from StoreCredentials import main as store_main
from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET
from tests.e2e.test_pull_metrics_isolation import RefusingCredential
from tests.functions import admin_request
from WebinarStatus import main as webinar_status_main

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))  # per route and auth mode: 2,000 per route
MARK = "Qz8Mk"  # every fuzzed token starts with it; it must never be seen again
SECRETS = (MARK, ON24_SECRET, ON24_KEY)
GUID = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
tokens = st.one_of(
    st.builds(lambda tail: MARK + tail, st.text(max_size=80)),
    st.builds(lambda tail: MARK + tail, st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E))),
    st.builds(lambda tail: MARK + tail + " ", st.text(max_size=10)),
    st.just(MARK * 130),  # over the length limit
)
urls = st.one_of(
    st.sampled_from(
        [
            "https://contoso.crm.dynamics.com",
            "https://contoso.crm4.dynamics.com/",
            "https://169.254.169.254",
            "https://user:pw@contoso.crm.dynamics.com",
            "https://contoso.crm.dynamics.com.evil.example",
            "http://127.0.0.1:1",
        ]
    ),
    st.builds(lambda a, b: f"https://{a}.crm{b}.dynamics.com", st.text(max_size=20), st.text(max_size=4)),
    st.text(max_size=60),
)
FIELDS = ("clientId", "accessTokenKey", "accessTokenSecret", "region", "dataverseUrl", "webinarIds")
# Mostly well-formed bodies (so most examples get past the first check and reach ON24, the key and the table),
# then up to two fields replaced by any JSON value and sometimes an unknown field.
credential_bodies = st.tuples(
    st.fixed_dictionaries(
        {
            "clientId": st.one_of(st.just(ON24_CLIENT_ID), st.from_regex(r"[0-9]{1,22}", fullmatch=True)),
            "accessTokenKey": st.one_of(st.just(ON24_KEY), tokens),
            "accessTokenSecret": st.one_of(st.just(ON24_SECRET), tokens),
        },
        optional={
            "region": st.sampled_from(["na", "eu", "NA", "apac", ""]),
            "dataverseUrl": urls,
            "webinarIds": st.lists(st.from_regex(r"-?[0-9]{1,20}", fullmatch=True), max_size=4),
        },
    ),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), json_values, max_size=2),
).map(lambda pair: {**pair[0], **pair[1]})
raw_bodies = st.one_of(
    credential_bodies.map(lambda body: json.dumps(body).encode("utf-8")),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode("utf-8")),
)
org_ids = st.one_of(
    st.just(GUID),
    st.just(GUID.upper()),
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    st.text(max_size=70),
)


def principal(claims: list[dict[str, Any]], role_typ: Any) -> str:
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims, "role_typ": role_typ}).encode()).decode()


role_names = st.one_of(
    st.just("Webinar.Admin"),
    st.builds(lambda org: f"Webinar.Admin.{org}", org_ids),
    st.text(max_size=30),
)
headers = st.one_of(
    st.just({}),
    st.builds(
        lambda roles, name: {
            "X-MS-CLIENT-PRINCIPAL": principal([{"typ": "roles", "val": r} for r in roles], "roles"),
            "X-MS-CLIENT-PRINCIPAL-NAME": name,
        },
        st.lists(role_names, max_size=3),
        st.text(max_size=20),
    ),
    st.builds(lambda junk: {"X-MS-CLIENT-PRINCIPAL": junk}, st.text(max_size=60)),
    st.builds(
        lambda value: {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(value).encode()).decode()}, json_values
    ),
)


class Collect(logging.Handler):
    """Every log record, formatted and with its extra fields, for the secret check."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.__dict__))


@pytest.fixture(params=["function key", "app service auth + org scope"])
def admin_env(
    request: pytest.FixtureRequest, on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Collect]:
    if request.param != "function key":
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
        monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    # An accepted dataverseUrl is checked with Dataverse's WhoAmI: the identity's token request is refused here,
    # so no request leaves the machine (422 dataverse_unverified).
    set_app(App(Settings.from_environ(), azure_credential=RefusingCredential()))
    handler = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def check(
    main: Callable[[func.HttpRequest], func.HttpResponse],
    method: str,
    org: str,
    raw: bytes,
    extra: dict[str, str],
    log: Collect,
    *,
    route: str = "orgs/{orgId}/webinar/credentials",
    more_params: dict[str, str] | None = None,
    also: frozenset[int] = frozenset(),
) -> None:
    log.texts.clear()
    request = admin_request(method, route, {"orgId": org, **(more_params or {})}, raw=raw, headers=extra)
    response = main(request)
    event(f"HTTP {response.status_code}")
    body = response.get_body().decode("utf-8")
    assert response.status_code != 500 or "configuration" in body, body
    assert response.status_code in {200, 400, 401, 403, 405, 422, 503} | also, (response.status_code, body)
    assert response.mimetype == "application/json"
    json.loads(body)
    seen = body + "\n".join(log.texts)
    for secret in SECRETS:
        assert secret not in seen, f"a secret leaked into the {'response' if secret in body else 'log'}"


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(org=org_ids, raw=raw_bodies, extra=headers)
def test_store_credentials_fuzzed(admin_env: Collect, org: str, raw: bytes, extra: dict[str, str]) -> None:
    check(store_main, "PUT", org, raw, extra, admin_env)


@FUZZ
@given(org=org_ids, raw=st.binary(max_size=50), extra=headers)
def test_credentials_status_fuzzed(admin_env: Collect, org: str, raw: bytes, extra: dict[str, str]) -> None:
    check(status_main, "GET", org, raw, extra, admin_env)


@FUZZ
@given(org=org_ids, raw=st.binary(max_size=50), extra=headers)
def test_remove_credentials_fuzzed(admin_env: Collect, org: str, raw: bytes, extra: dict[str, str]) -> None:
    check(remove_main, "DELETE", org, raw, extra, admin_env)


ROUTE_FUZZ = settings(FUZZ, max_examples=max(1, EXAMPLES // 4))  # fewer: no body to explore on these routes
webinar_ids = st.one_of(st.just("4471234"), st.from_regex(r"-?[0-9]{1,20}", fullmatch=True), st.text(max_size=25))


@ROUTE_FUZZ
@given(org=org_ids, raw=st.binary(max_size=50), extra=headers)
def test_webinar_status_fuzzed(admin_env: Collect, org: str, raw: bytes, extra: dict[str, str]) -> None:
    check(webinar_status_main, "GET", org, raw, extra, admin_env, route="orgs/{orgId}/webinar/status")


@ROUTE_FUZZ
@given(org=org_ids, webinar=webinar_ids, raw=st.one_of(st.just(b""), st.binary(max_size=50)), extra=headers)
def test_pull_webinar_fuzzed(admin_env: Collect, org: str, webinar: str, raw: bytes, extra: dict[str, str]) -> None:
    check(
        pull_webinar_main,
        "POST",
        org,
        raw,
        extra,
        admin_env,
        route="orgs/{orgId}/webinars/{webinarId}/pull",
        more_params={"webinarId": webinar},
        also=frozenset({202, 404, 409}),
    )


def test_the_fuzz_reaches_every_outcome(on24_env: dict[str, str]) -> None:
    """The strategies are not all bounced at the door: a stored org and each refusal are among the examples."""
    reset_app()
    codes = set()
    body = {"clientId": ON24_CLIENT_ID, "accessTokenKey": ON24_KEY, "accessTokenSecret": ON24_SECRET}
    for raw in (json.dumps(body).encode(), json.dumps({**body, "accessTokenSecret": MARK + "x"}).encode(), b"{"):
        response = store_main(
            func.HttpRequest(
                "PUT", "http://localhost/api", headers={}, params={}, route_params={"orgId": GUID}, body=raw
            )
        )
        codes.add(response.status_code)
    assert codes == {200, 422, 400}
    assert str(uuid.UUID(GUID)) == GUID
