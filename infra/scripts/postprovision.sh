#!/bin/sh
# azd postprovision hook.
# 1. Deletes the key-generation identity's temporary Key Vault role (KEYGEN_ROLE_ASSIGNMENT_ID, an output of
#    infra/resources.bicep) and sets GENERATE_CREDENTIALS_KEY=false, so no identity keeps write access to the
#    credentials key and later provisions do not grant it again. It runs as the deploying user, who created it.
# 2. Prints the values the Dataverse steps need (docs/deploy.md). Prints no secret: the SAS key and the
#    function key are fetched by the admin with the commands shown.
set -eu
if [ -n "${KEYGEN_ROLE_ASSIGNMENT_ID:-}" ]; then
  if ! az role assignment delete --ids "$KEYGEN_ROLE_ASSIGNMENT_ID" -o none; then
    echo "postprovision: could not delete the key-generation identity's Key Vault role; delete it with" >&2
    echo "  az role assignment delete --ids $KEYGEN_ROLE_ASSIGNMENT_ID" >&2
    exit 1
  fi
  azd env set GENERATE_CREDENTIALS_KEY false
  echo "Deleted the key-generation identity's temporary Key Vault role (the credentials key exists)."
fi
cat <<TEXT

Provisioned. Next steps (docs/deploy.md):
  Dataverse application user: client id ${APP_IDENTITY_CLIENT_ID:-?}
  Service endpoint: namespace ${SERVICE_BUS_NAMESPACE:-?}.servicebus.windows.net, queue ${SERVICE_BUS_QUEUE:-?},
    SAS rule ${SERVICE_BUS_SEND_RULE:-?} (Send only); read its key with:
      az servicebus queue authorization-rule keys list -g ${AZURE_RESOURCE_GROUP:-?} \\
        --namespace-name ${SERVICE_BUS_NAMESPACE:-?} --queue-name ${SERVICE_BUS_QUEUE:-?} \\
        --name ${SERVICE_BUS_SEND_RULE:-?} --query primaryKey -o tsv
  Admin routes: ${AZURE_FUNCTION_APP_URL:-?}/api/orgs/{orgId}/webinar/credentials; function key:
      az functionapp function keys list -g ${AZURE_RESOURCE_GROUP:-?} -n ${AZURE_FUNCTION_APP_NAME:-?} \\
        --function-name StoreCredentials --query default -o tsv
TEXT
