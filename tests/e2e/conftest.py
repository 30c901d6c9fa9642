"""Fixtures shared by the e2e modules of the status route, the on-demand pull and the replay tool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_pull_metrics import CLIENT_B, Webinars


@pytest.fixture
def webinars(app_env: dict[str, str], on24: Any, dataverse: Any) -> Iterator[Webinars]:
    """Two orgs, three webinars live two hours ago (``tests.e2e.test_pull_metrics.Webinars``); the second org's
    ON24 account is active again afterwards, whatever the test did to it."""
    yield Webinars(on24, dataverse)
    on24.reactivate(CLIENT_B)
