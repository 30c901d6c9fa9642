#!/bin/sh
# azd postprovision hook: print the values the Dataverse steps need (README "Deploying to Azure"). Prints no secret:
# the SAS key and the function key are fetched by the admin with the commands shown.
set -eu
cat <<TEXT

Provisioned. Next steps (README "Deploying to Azure"):
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
