"""infra/scripts/generate-credentials-key.sh, the deployment script that creates the credentials key, run for real.

``az`` is replaced by a stand-in on PATH that keeps the vault in a directory and logs every command line, so the
test sees what Azure would: the secret is base64 of 32 bytes, created once, never overwritten, never on a command
line or in the script's output, and a late role assignment is waited for while other errors stop the deployment.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA

SCRIPT = INFRA / "scripts" / "generate-credentials-key.sh"

FAKE_AZ = r'''#!PYTHON
"""Stand-in for the Azure CLI's `az keyvault secret show|set` (state in $FAKE_VAULT_DIR)."""
import json, os, sys
state = os.environ["FAKE_VAULT_DIR"]
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
path = os.path.join(state, "vault.json")
vault = json.load(open(path)) if os.path.exists(path) else {}
failures = os.path.join(state, "forbidden")
if os.path.exists(failures):
    left = int(open(failures).read())
    if left > 0:
        open(failures, "w").write(str(left - 1))
        print("(Forbidden) Caller is not authorized. Code: ForbiddenByRbac", file=sys.stderr); sys.exit(1)
if os.path.exists(os.path.join(state, "broken")):
    print("(VaultNotFound) The vault could not be found", file=sys.stderr); sys.exit(1)
name = opt("--name")
if args[:3] == ["keyvault", "secret", "show"]:
    if name in vault:
        print("https://%s.vault.azure.net/secrets/%s/v%d" % (opt("--vault-name"), name, len(vault[name]))); sys.exit(0)
    print("(SecretNotFound) A secret with (name/id) %s was not found in this key vault." % name, file=sys.stderr)
    sys.exit(3)
if args[:3] == ["keyvault", "secret", "set"]:
    value = open(opt("--file"), encoding=opt("--encoding")).read()
    vault.setdefault(name, []).append({"value": value, "contentType": opt("--content-type")})
    json.dump(vault, open(path, "w")); sys.exit(0)
print("unexpected az call", args, file=sys.stderr); sys.exit(2)
'''


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.replace("PYTHON", sys.executable), encoding="utf-8")
    az.chmod(az.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "vault"
    state.mkdir()
    return state


def run(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PATH": f"{state.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_VAULT_DIR": str(state),
        "VAULT_NAME": "kv-test",
        "SECRET_NAME": "on24-credentials-key",
        "RETRY_SLEEP_SECONDS": "0",
        **env,
    }
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run(  # noqa: S603 - our own script with fixed arguments
        [bash, str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def versions(state: Path) -> list[dict[str, str]]:
    path = state / "vault.json"
    return json.loads(path.read_text())["on24-credentials-key"] if path.exists() else []


def calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.log").read_text().splitlines()]


def test_creates_base64_of_32_random_bytes_without_exposing_it(vault: Path) -> None:
    done = run(vault)
    assert done.returncode == 0, done.stderr
    [secret] = versions(vault)
    key = secret["value"]
    assert len(base64.b64decode(key, validate=True)) == 32
    assert key not in done.stdout and key not in done.stderr, "the key is never printed"
    for argv in calls(vault):
        assert key not in " ".join(argv), "the key is never on a command line"
    [set_call] = [argv for argv in calls(vault) if argv[:3] == ["keyvault", "secret", "set"]]
    assert not Path(set_call[set_call.index("--file") + 1]).exists(), "the key file is removed"


def test_an_existing_key_is_never_overwritten(vault: Path) -> None:
    assert run(vault).returncode == 0
    first = versions(vault)
    again = run(vault)
    assert again.returncode == 0 and "left unchanged" in again.stdout
    assert versions(vault) == first, "re-provisioning must not rotate the key"


def test_each_vault_gets_its_own_key(vault: Path, tmp_path: Path) -> None:
    assert run(vault).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    assert run(other).returncode == 0
    assert versions(vault)[0]["value"] != versions(other)[0]["value"]


def test_waits_for_a_role_assignment_that_has_not_propagated_yet(vault: Path) -> None:
    (vault / "forbidden").write_text("3")
    done = run(vault)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("waiting for the Key Vault role assignment") == 3
    assert len(versions(vault)) == 1


def test_any_other_error_fails_the_deployment_without_writing(vault: Path) -> None:
    (vault / "broken").write_text("")
    done = run(vault)
    assert done.returncode != 0 and "VaultNotFound" in done.stderr
    assert versions(vault) == []


HOOK = INFRA / "scripts" / "postprovision.sh"
FAKE_CLI = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
[ -n "${FAIL:-}" ] && [ "$(basename "$0")" = az ] && { echo "(AuthorizationFailed) no permission" >&2; exit 1; }
exit 0
"""


def _run_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("az", "azd"):
        (bin_dir / tool).write_text(FAKE_CLI)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.log"
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), **env}
    run = subprocess.run(["sh", str(HOOK)], env=environ, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603, S607
    return run, calls.read_text().splitlines() if calls.exists() else []


def test_the_postprovision_hook_deletes_the_temporary_key_vault_role_and_turns_key_generation_off(
    tmp_path: Path,
) -> None:
    role = (
        "/subscriptions/0000/resourceGroups/rg-müller/providers/Microsoft.KeyVault/vaults/kv1"
        "/providers/Microsoft.Authorization/roleAssignments/abc"
    )
    run, calls = _run_hook(tmp_path, KEYGEN_ROLE_ASSIGNMENT_ID=role)
    assert run.returncode == 0, run.stderr
    assert calls == [f"az role assignment delete --ids {role} -o none", "azd env set GENERATE_CREDENTIALS_KEY false"]
    (tmp_path / "later").mkdir()
    again, calls_again = _run_hook(tmp_path / "later")
    assert again.returncode == 0 and calls_again == [], "nothing to delete when the role was not created"


def test_the_postprovision_hook_fails_loudly_when_the_role_cannot_be_deleted(tmp_path: Path) -> None:
    run, calls = _run_hook(tmp_path, KEYGEN_ROLE_ASSIGNMENT_ID="/roleAssignments/abc", FAIL="1")
    assert run.returncode == 1
    assert "az role assignment delete --ids /roleAssignments/abc" in run.stderr, "says what to run by hand"
    assert not any(c.startswith("azd env set") for c in calls), "key generation stays on until the role is gone"
