"""Forget tombstones and the keyed email hash against Azurite and the Key Vault stand-in (issue 18): the hash key is
derived from a pinned version of the credentials key, so a rotation does not make old tombstones miss; tombstones
only move forward, expire after their retention, and a purge deletes one org's only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.keyvault import KeyVaultStandIn
from shared.app import App, get_app
from shared.crypto import KeyVaultKeyProvider
from shared.emailhash import TOMBSTONE, EmailHashers
from shared.errors import ConfigError
from shared.keyvault import KeyVaultSecretSource, StaticTokenCredential
from shared.store.keypin import TableKeyPin
from shared.store.tombstones import Tombstones
from tests.conftest import random_key

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(base_env: dict[str, str]) -> App:
    return get_app()


def test_a_key_rotation_keeps_the_hashes_and_a_disabled_pinned_version_fails_loudly(
    app: App, keyvault: KeyVaultStandIn
) -> None:
    name = "email-hash-rotation"
    first = keyvault.set_secret(name, random_key())
    source = KeyVaultSecretSource.connect(
        keyvault.url, StaticTokenCredential(), connection_verify=str(keyvault.ca.ca_path)
    )

    def hashers() -> EmailHashers:  # a fresh worker process: nothing cached
        return EmailHashers(KeyVaultKeyProvider(source, name), TableKeyPin(app.tables.table("orgs")))

    before = hashers()(TOMBSTONE)
    assert before.key_id == f"kv:{name}/{first}#{TOMBSTONE}"
    keyvault.set_secret(name, random_key())  # the credentials key is rotated
    after = hashers()(TOMBSTONE)
    assert after.key_id == before.key_id and after("Ivan.Petrov@firma.example") == before("ivan.petrov@firma.example")
    assert hashers()("match-index")("a@firma.example") != after("a@firma.example"), "one key per purpose"

    keyvault.set_enabled(name, first, False)
    with pytest.raises(ConfigError, match="cannot be read"):
        hashers()(TOMBSTONE)  # never silently a new key whose hashes match no tombstone


def test_tombstones_move_forward_expire_and_a_purge_takes_one_orgs_only(app: App) -> None:
    stones = app.tombstones
    assert stones.record("org-a", NOW, registration_ids=["r1"], email="Jorg.Muller@firma.example") == 2
    assert stones.record("org-a", NOW - timedelta(days=1), registration_ids=["r1"]) == 0, "never moved back"
    assert stones.forgotten_at("org-a", "r9", "jorg.muller@FIRMA.example") == NOW, "found by the address"
    assert stones.forgotten_at("org-a", "r1", None) == NOW, "found by the registration"
    assert stones.forgotten_at("org-b", "r1", "jorg.muller@firma.example") is None, "another org's forget"
    later = NOW + timedelta(days=2)
    assert stones.record("org-a", later, registration_ids=["r1"]) == 1
    assert stones.forgotten_at("org-a", "r1", "jorg.muller@firma.example") == later, "the latest forget counts"
    stones.record("org-b", NOW, registration_ids=["r2"])

    assert stones.expire(NOW - timedelta(seconds=1), limit=100) == (0, True)
    assert stones.expire(NOW + timedelta(days=1), limit=100) == (2, True), "the e| row and org-b's r2"
    assert stones.forgotten_at("org-a", "r1", None) == later
    assert stones.delete_org_rows("org-a", limit=100) == 1
    assert stones.forgotten_at("org-a", "r1", None) is None
    assert isinstance(stones, Tombstones)
