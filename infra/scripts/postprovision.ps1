# azd postprovision hook (Windows): same text as postprovision.sh. Prints no secret.
$ErrorActionPreference = 'Stop'
Write-Host ""
Write-Host "Provisioned. Next steps (README 'Deploying to Azure'):"
Write-Host "  Dataverse application user: client id $env:APP_IDENTITY_CLIENT_ID"
Write-Host "  Service endpoint: namespace $env:SERVICE_BUS_NAMESPACE.servicebus.windows.net, queue $env:SERVICE_BUS_QUEUE, SAS rule $env:SERVICE_BUS_SEND_RULE (Send only); read its key with:"
Write-Host "    az servicebus queue authorization-rule keys list -g $env:AZURE_RESOURCE_GROUP --namespace-name $env:SERVICE_BUS_NAMESPACE --queue-name $env:SERVICE_BUS_QUEUE --name $env:SERVICE_BUS_SEND_RULE --query primaryKey -o tsv"
Write-Host "  Admin routes: $env:AZURE_FUNCTION_APP_URL/api/orgs/{orgId}/webinar/credentials; function key:"
Write-Host "    az functionapp function keys list -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME --function-name StoreCredentials --query default -o tsv"
