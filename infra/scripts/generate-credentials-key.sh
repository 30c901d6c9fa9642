#!/bin/bash
# Runs inside the Azure CLI deployment script of infra/resources.bicep (environment: VAULT_NAME, SECRET_NAME).
#
# Creates the credentials encryption key once: base64 of 32 random bytes from the kernel CSPRNG (Python's secrets
# module, which reads os.urandom). An existing secret is never overwritten, so re-provisioning never rotates the key
# behind the app's back (rotate by adding a version on purpose; see README "Rotating the key").
# The key goes to a file on this throwaway container's tmpfs and to `az keyvault secret set --file`: never to the
# command line, standard output or the script's outputs.
set -euo pipefail

: "${VAULT_NAME:?}" "${SECRET_NAME:?}"

# A fresh role assignment can take a few minutes to reach Key Vault: retry "forbidden", give up on anything else.
for attempt in $(seq 1 30); do
  if out=$(az keyvault secret show --vault-name "$VAULT_NAME" --name "$SECRET_NAME" --query id -o tsv 2>&1); then
    echo "secret $SECRET_NAME already exists in $VAULT_NAME: left unchanged"
    exit 0
  fi
  case "$out" in
    *SecretNotFound*|*"was not found"*) break ;;
    *Forbidden*|*ForbiddenByRbac*|*"does not have secrets get permission"*)
      echo "waiting for the Key Vault role assignment (attempt $attempt)"; sleep "${RETRY_SLEEP_SECONDS:-20}" ;;
    *) echo "cannot read $SECRET_NAME from $VAULT_NAME: $out" >&2; exit 1 ;;
  esac
done

umask 077
keyfile=$(mktemp)
trap 'rm -f "$keyfile"' EXIT
python3 -c 'import base64, secrets, sys; sys.stdout.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))' > "$keyfile"
python3 -c 'import base64, sys; assert len(base64.b64decode(open(sys.argv[1]).read(), validate=True)) == 32' "$keyfile"

for attempt in $(seq 1 30); do
  if az keyvault secret set --vault-name "$VAULT_NAME" --name "$SECRET_NAME" --file "$keyfile" --encoding utf-8 \
       --content-type "base64; 32 bytes; AES-256 key-encryption key" -o none 2>/tmp/set.err; then
    echo "secret $SECRET_NAME created in $VAULT_NAME"
    exit 0
  fi
  if grep -q -E "Forbidden|ForbiddenByRbac" /tmp/set.err; then
    echo "waiting for the Key Vault role assignment (attempt $attempt)"; sleep "${RETRY_SLEEP_SECONDS:-20}"
  else
    echo "cannot create $SECRET_NAME in $VAULT_NAME: $(cat /tmp/set.err)" >&2; exit 1
  fi
done
echo "the key generation identity never got access to $VAULT_NAME" >&2
exit 1
