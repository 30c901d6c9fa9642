// Entry point for `azd up` / `azd provision`: creates the resource group and deploys resources.bicep into it.
// Without azd: `az deployment sub create -l <region> -f infra/main.bicep -p environmentName=<name> location=<region>`,
// or deploy infra/resources.bicep into an existing group with `az deployment group create`.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name (AZURE_ENV_NAME): names the resource group rg-<name> and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Region for all resources (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Existing or new resource group name; default rg-<environmentName>.')
param resourceGroupName string = ''

@minValue(40)
@maxValue(1000)
@description('Flex Consumption maximumInstanceCount (the scale limit).')
param maximumInstanceCount int = 100

@minValue(1)
@maxValue(2000)
@description('Service Bus maxDeliveryCount of the registrations queue.')
param maxDeliveryCount int = 10

@description('Default Dataverse org URL (DATAVERSE_URL); may be empty.')
param dataverseUrl string = ''

@description('E-mail address for the alert rules (ALERT_EMAIL); empty: alerts without notification.')
param alertEmail string = ''

@description('Client id of the Entra app registration that signs admins in (ADMIN_AUTH_CLIENT_ID); empty: no App Service authentication.')
param adminAuthClientId string = ''

@description('Create the credentials key if missing, with a temporary Key Vault role (GENERATE_CREDENTIALS_KEY; the postprovision hook sets it to false).')
param generateCredentialsKey bool = true

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: {
    'azd-env-name': environmentName
  }
}

module resources 'resources.bicep' = {
  name: 'on24-integration-${environmentName}'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    maximumInstanceCount: maximumInstanceCount
    maxDeliveryCount: maxDeliveryCount
    dataverseUrl: dataverseUrl
    generateCredentialsKey: generateCredentialsKey
    alertEmail: alertEmail
    adminAuthClientId: adminAuthClientId
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = resources.outputs.AZURE_FUNCTION_APP_NAME
output AZURE_FUNCTION_APP_URL string = resources.outputs.AZURE_FUNCTION_APP_URL
output APP_IDENTITY_CLIENT_ID string = resources.outputs.APP_IDENTITY_CLIENT_ID
output APP_IDENTITY_PRINCIPAL_ID string = resources.outputs.APP_IDENTITY_PRINCIPAL_ID
output SERVICE_BUS_NAMESPACE string = resources.outputs.SERVICE_BUS_NAMESPACE
output SERVICE_BUS_QUEUE string = resources.outputs.SERVICE_BUS_QUEUE
output SERVICE_BUS_SEND_RULE string = resources.outputs.SERVICE_BUS_SEND_RULE
output KEY_VAULT_NAME string = resources.outputs.KEY_VAULT_NAME
output KEYGEN_ROLE_ASSIGNMENT_ID string = resources.outputs.KEYGEN_ROLE_ASSIGNMENT_ID
output STORAGE_ACCOUNT_NAME string = resources.outputs.STORAGE_ACCOUNT_NAME
output APPLICATIONINSIGHTS_NAME string = resources.outputs.APPLICATIONINSIGHTS_NAME
output LOG_ANALYTICS_WORKSPACE_ID string = resources.outputs.LOG_ANALYTICS_WORKSPACE_ID
