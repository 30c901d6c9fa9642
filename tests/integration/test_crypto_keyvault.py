"""Envelope encryption with keys read by the real SecretClient from the HTTPS Key Vault stand-in."""

from __future__ import annotations

import json

import pytest
from azure.core.credentials import AccessToken

from sandbox.keyvault import KeyVaultStandIn
from shared.crypto import CredentialCipher, KeyVaultKeyProvider, LocalKeyProvider
from shared.errors import ConfigError, DecryptionError
from shared.keyvault import KeyVaultSecretSource, StaticTokenCredential
from tests.conftest import random_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secret_name(keyvault: KeyVaultStandIn, request: pytest.FixtureRequest) -> str:
    name = f"key-{request.node.name[:40].replace('_', '-').replace('[', '-').replace(']', '')}"
    keyvault.set_secret(name, random_key())
    return name


@pytest.fixture
def source(keyvault: KeyVaultStandIn) -> KeyVaultSecretSource:
    return KeyVaultSecretSource.connect(
        keyvault.url, StaticTokenCredential(), connection_verify=str(keyvault.ca.ca_path)
    )


def test_secret_client_answers_the_bearer_challenge_then_reads_the_key(keyvault: KeyVaultStandIn) -> None:
    # A vault on a new address: the SDK caches challenges per vault URL for the whole process.
    with KeyVaultStandIn(keyvault.ca) as fresh:
        assert isinstance(fresh, KeyVaultStandIn)
        expected = fresh.set_secret("challenge-key", random_key())
        source = KeyVaultSecretSource.connect(
            fresh.url, StaticTokenCredential(), connection_verify=str(fresh.ca.ca_path)
        )
        version, value = source.get_secret("challenge-key")
        assert version == expected and len(value) == 44
        assert fresh.requests[0].header("authorization") is None, "the first call carries no token: 401 challenge"
        assert fresh.requests[-1].header("authorization") == "Bearer sandbox-token"


def test_round_trip_and_org_binding(source: KeyVaultSecretSource, secret_name: str) -> None:
    cipher = CredentialCipher(KeyVaultKeyProvider(source, secret_name))
    envelope = cipher.seal("org-a", b'{"accessTokenSecret":"s3cr3t-value"}')
    assert b"s3cr3t-value" not in envelope.encode()
    assert cipher.open("org-a", envelope) == b'{"accessTokenSecret":"s3cr3t-value"}'
    with pytest.raises(DecryptionError, match="another org"):
        cipher.open("org-b", envelope)


@pytest.mark.parametrize("field", ["ct", "dk", "n"])
def test_tampered_envelope_fails_clearly(source: KeyVaultSecretSource, secret_name: str, field: str) -> None:
    cipher = CredentialCipher(KeyVaultKeyProvider(source, secret_name))
    fields = json.loads(cipher.seal("org-a", b"payload"))
    raw = bytearray(__import__("base64").b64decode(fields[field]))
    raw[-1] ^= 0x01
    fields[field] = __import__("base64").b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionError, match="failed authentication"):
        cipher.open("org-a", json.dumps(fields))


def test_unknown_or_wrong_key_version_fails_clearly(
    keyvault: KeyVaultStandIn, source: KeyVaultSecretSource, secret_name: str
) -> None:
    cipher = CredentialCipher(KeyVaultKeyProvider(source, secret_name))
    fields = json.loads(cipher.seal("org-a", b"payload"))
    fields["kid"] = f"kv:{secret_name}/0123456789abcdef0123456789abcdef"
    with pytest.raises(DecryptionError, match="no longer exists"):
        cipher.open("org-a", json.dumps(fields))
    other_version = keyvault.set_secret(secret_name, random_key())
    fields["kid"] = f"kv:{secret_name}/{other_version}"
    with pytest.raises(DecryptionError, match="wrong key version"):
        cipher.open("org-a", json.dumps(fields))
    with pytest.raises(DecryptionError, match="not a readable envelope"):
        cipher.open("org-a", "not json at all")


def test_rotation_new_writes_use_new_version_old_rows_still_open(
    keyvault: KeyVaultStandIn, source: KeyVaultSecretSource, secret_name: str
) -> None:
    clock = Clock()
    provider = KeyVaultKeyProvider(source, secret_name, refresh_seconds=300, clock=clock)
    cipher = CredentialCipher(provider)
    old = cipher.seal("org-a", b"before rotation")
    new_version = keyvault.set_secret(secret_name, random_key())
    clock.now = 299
    assert CredentialCipher.key_id_of(cipher.seal("org-a", b"x")) == CredentialCipher.key_id_of(old)
    clock.now = 301  # the current version is re-checked every few minutes
    new = cipher.seal("org-a", b"after rotation")
    assert CredentialCipher.key_id_of(new) == f"kv:{secret_name}/{new_version}"
    assert CredentialCipher.key_id_of(old) != CredentialCipher.key_id_of(new)
    fresh = CredentialCipher(KeyVaultKeyProvider(source, secret_name))  # a new worker after rotation
    assert fresh.open("org-a", old) == b"before rotation"
    assert fresh.open("org-a", new) == b"after rotation"


def test_versions_are_cached_once_read(
    keyvault: KeyVaultStandIn, source: KeyVaultSecretSource, secret_name: str
) -> None:
    cipher = CredentialCipher(KeyVaultKeyProvider(source, secret_name))
    envelope = cipher.seal("org-a", b"payload")
    keyvault.reset_log()
    for _ in range(20):
        cipher.open("org-a", envelope)
    assert keyvault.count() == 0


def test_missing_secret_and_bad_secret_value_are_config_errors(
    keyvault: KeyVaultStandIn, source: KeyVaultSecretSource
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        KeyVaultKeyProvider(source, "no-such-secret").current_key()
    keyvault.set_secret("not-a-key", "hello")
    with pytest.raises(ConfigError, match="32 random bytes"):
        KeyVaultKeyProvider(source, "not-a-key").current_key()


def test_vault_rejecting_the_token_is_a_config_error(keyvault: KeyVaultStandIn, secret_name: str) -> None:
    class WrongToken:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken("wrong", 4102444800)

    source = KeyVaultSecretSource.connect(keyvault.url, WrongToken(), connection_verify=str(keyvault.ca.ca_path))
    with pytest.raises(ConfigError, match="identity could not authenticate"):
        source.get_secret(secret_name)


def test_local_key_provider_names_a_key_mismatch() -> None:
    sealed = CredentialCipher(LocalKeyProvider(random_key())).seal("org-a", b"payload")
    with pytest.raises(DecryptionError, match="not the configured local key"):
        CredentialCipher(LocalKeyProvider(random_key())).open("org-a", sealed)


def test_a_disabled_key_version_is_a_decryption_error_not_an_access_problem(
    keyvault: KeyVaultStandIn, source: KeyVaultSecretSource, secret_name: str
) -> None:
    sealed = CredentialCipher(KeyVaultKeyProvider(source, secret_name)).seal("org-a", b"payload")
    old_version = keyvault.versions(secret_name)[-1]
    keyvault.set_secret(secret_name, random_key())  # rotated, then the old version disabled by an admin
    keyvault.set_enabled(secret_name, old_version, False)
    fresh = CredentialCipher(KeyVaultKeyProvider(source, secret_name))  # a new worker: nothing cached
    with pytest.raises(DecryptionError, match="is disabled in Key Vault"):
        fresh.open("org-a", sealed)
    keyvault.set_enabled(secret_name, old_version, True)
    assert fresh.open("org-a", sealed) == b"payload"


def test_key_vault_reads_are_bounded_well_inside_a_registration_lease(keyvault: KeyVaultStandIn) -> None:
    source = KeyVaultSecretSource.connect(keyvault.url, StaticTokenCredential())
    generated = source._client._client  # the SDK pipeline as the app builds it (private, pinned SDK version)
    assert generated._config.retry_policy.total_retries <= 2, "the SDK default is 10"
    connection = generated._client._pipeline._transport.connection_config
    assert connection.timeout <= 5 and connection.read_timeout <= 10, "the SDK default read timeout is 300 s"
