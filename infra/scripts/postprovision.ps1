# azd postprovision hook (Windows): does what postprovision.sh does. Prints no secret.
$ErrorActionPreference = 'Stop'
if ($env:KEYGEN_ROLE_ASSIGNMENT_ID) {
    az role assignment delete --ids $env:KEYGEN_ROLE_ASSIGNMENT_ID -o none
    if ($LASTEXITCODE -ne 0) {
        Write-Error "postprovision: could not delete the key-generation identity's Key Vault role; delete it with: az role assignment delete --ids $env:KEYGEN_ROLE_ASSIGNMENT_ID"
        exit 1
    }
    azd env set GENERATE_CREDENTIALS_KEY false
    Write-Host "Deleted the key-generation identity's temporary Key Vault role (the credentials key exists)."
}
Write-Host ""
Write-Host "Provisioned. Next steps (docs/deploy.md):"
Write-Host "  Dataverse application user: client id $env:APP_IDENTITY_CLIENT_ID"
Write-Host "  Service endpoint: namespace $env:SERVICE_BUS_NAMESPACE.servicebus.windows.net, queue $env:SERVICE_BUS_QUEUE, SAS rule $env:SERVICE_BUS_SEND_RULE (Send only); read its key with:"
Write-Host "    az servicebus queue authorization-rule keys list -g $env:AZURE_RESOURCE_GROUP --namespace-name $env:SERVICE_BUS_NAMESPACE --queue-name $env:SERVICE_BUS_QUEUE --name $env:SERVICE_BUS_SEND_RULE --query primaryKey -o tsv"
Write-Host "  Admin routes: $env:AZURE_FUNCTION_APP_URL/api/orgs/{orgId}/webinar/credentials; function key:"
Write-Host "    az functionapp function keys list -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME --function-name StoreCredentials --query default -o tsv"
