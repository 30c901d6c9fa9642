"""KeyVaultKeyProvider under a slow Key Vault: one thread's fetch never stalls the threads whose keys are cached."""

from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.crypto import KeyVaultKeyProvider
from shared.errors import ConfigError, DecryptionError, SecretUnavailableError

NAME = "on24-credentials-key"


def key_value() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class SlowVault:
    """A SecretSource whose reads of chosen versions wait until the test lets them go."""

    def __init__(self) -> None:
        self.versions = {"v1": key_value(), "v2": key_value()}
        self.latest = "v1"
        self.hold: set[str | None] = set()
        self.reached = threading.Event()
        self.go = threading.Event()
        self.disabled: set[str] = set()

    def get_secret(self, name: str, version: str | None = None) -> tuple[str, str]:
        if version in self.hold:
            self.reached.set()
            assert self.go.wait(10)
        wanted = version or self.latest
        if wanted in self.disabled:
            raise SecretUnavailableError(f"{name}/{wanted}", disabled=True)
        if wanted not in self.versions:
            raise SecretUnavailableError(f"{name}/{wanted}")
        return wanted, self.versions[wanted]


def test_a_slow_fetch_of_one_version_does_not_stall_threads_with_cached_keys() -> None:
    vault, now = SlowVault(), [0.0]
    provider = KeyVaultKeyProvider(vault, NAME, refresh_seconds=300, clock=lambda: now[0])
    current = provider.current_key()
    vault.hold = {"v2"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(provider.key, f"kv:{NAME}/v2")
        assert vault.reached.wait(10)
        # While v2 is being fetched, the cached current key is served at once.
        assert provider.key(current.key_id) == current
        assert provider.current_key() == current
        vault.go.set()
        assert slow.result(10).key_id == f"kv:{NAME}/v2"


def test_while_the_current_version_is_refreshed_other_threads_keep_sealing_with_the_one_they_have() -> None:
    vault, now = SlowVault(), [0.0]
    provider = KeyVaultKeyProvider(vault, NAME, refresh_seconds=300, clock=lambda: now[0])
    old = provider.current_key()
    now[0] = 301.0  # the current version is due to be re-read
    vault.latest, vault.hold = "v2", {None}
    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(provider.current_key)
        assert vault.reached.wait(10)
        assert provider.current_key() == old, "not blocked behind the refresh"
        vault.go.set()
        assert refreshing.result(10).key_id == f"kv:{NAME}/v2"
    assert provider.current_key().key_id == f"kv:{NAME}/v2"


def test_a_disabled_or_missing_key_version_is_a_decryption_error_an_admin_can_act_on() -> None:
    vault = SlowVault()
    vault.disabled = {"v2"}
    provider = KeyVaultKeyProvider(vault, NAME)
    with pytest.raises(DecryptionError, match="is disabled in Key Vault: enable that version"):
        provider.key(f"kv:{NAME}/v2")
    with pytest.raises(DecryptionError, match="no longer exists in Key Vault: recover"):
        provider.key(f"kv:{NAME}/v9")
    vault.disabled = {"v1"}
    with pytest.raises(ConfigError, match=r"latest version .* is disabled"):
        provider.current_key()
