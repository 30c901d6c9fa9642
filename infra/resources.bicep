// Everything the ON24 <-> Dynamics 365 integration needs, in one resource group.
//
// Deployed by `azd up` through main.bicep, or directly:
//   az deployment group create -g <rg> -f infra/resources.bicep -p environmentName=<name>
//
// Shape follows Azure-Samples/functions-quickstart-python-azd-service-bus and
// Azure-Samples/azure-functions-flex-consumption-samples (IaC/bicep): a Flex Consumption app, one user-assigned
// identity used by every connection, identity-based AzureWebJobsStorage and ServiceBusConnection, the deployment
// package in a blob container of the host storage account. Written without registry modules so that checkov and
// the repository's tests can read every resource.
//
// Every role assignment below says why it is needed. Nothing secret is ever an output: not the Service Bus SAS key
// (read it with `az servicebus queue authorization-rule keys list`, see README) and not the credentials key (it is
// generated inside the deployment script and only ever written to Key Vault).

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; used for tags and, with the resource group id, for unique resource names.')
param environmentName string

@description('Region of every resource. Flex Consumption is not offered in every region: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

@minValue(40)
@maxValue(1000)
@description('Flex Consumption scale limit (functionAppConfig.scaleAndConcurrency.maximumInstanceCount). Flex ignores WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT. 40 is the lowest value Flex accepts.')
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
@description('Memory of each Flex Consumption instance (MB). 2048 is the platform default.')
param instanceMemoryMB int = 2048

@description('Name of the Service Bus queue that Dataverse posts registrations to (app setting REGISTRATIONS_QUEUE).')
param registrationsQueueName string = 'webinar-registrations'

@minValue(120)
@maxValue(300)
@description('Queue lock duration in seconds. Must outlast one RegisterAttendee delivery: the ledger lease (REGISTRATION_LEASE_SECONDS, 90 s) with every ON24 call bounded by RETRY_BUDGET_SECONDS (15 s) plus the HTTP timeout (10 s). Service Bus allows at most 5 minutes.')
param queueLockDurationSeconds int = 120

@minValue(1)
@maxValue(2000)
@description('Deliveries before Service Bus dead-letters a message (only transient and configuration faults make RegisterAttendee raise).')
param maxDeliveryCount int = 10

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
@description('Service Bus tier. Standard is enough for one queue; Premium is needed only for private endpoints.')
param serviceBusSku string = 'Standard'

@description('NCRONTAB schedule of PullMetrics (app setting PULL_METRICS_SCHEDULE; UTC).')
param pullMetricsSchedule string = '0 */15 * * * *'

@description('NCRONTAB schedule of RetryParked, which re-drives parked registrations (app setting RETRY_PARKED_SCHEDULE; UTC).')
param retryParkedSchedule string = '0 * * * * *'

@minLength(1)
@maxLength(40)
@description('Prefix of the state tables and of the rejected-messages container (app setting STATE_TABLE_PREFIX): letters and digits.')
param stateTablePrefix string = 'webinar'

@description('Name of the Key Vault secret holding the credentials encryption key (app setting CREDENTIALS_KEY_SECRET_NAME).')
param credentialsKeySecretName string = 'on24-credentials-key'

@description('Default Dataverse org URL, used when an org\'s stored credentials carry no dataverseUrl (app setting DATAVERSE_URL). May be empty.')
param dataverseUrl string = ''

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Replication of the storage account (host files, app package, state tables).')
param storageSku string = 'Standard_LRS'

@description('Log Analytics retention in days.')
param logRetentionDays int = 30

@minValue(1)
@maxValue(3650)
@description('Days an unparseable queue message is kept whole (table row, large bodies as blobs) before the PullMetrics timer deletes it (app setting REJECTED_RETENTION_DAYS).')
param rejectedRetentionDays int = 30

@description('Allow the Service Bus SAS rule for Dataverse to be created. Dataverse service endpoints sign in with SAS, so this stays true unless messages arrive another way.')
param createDataverseSendRule bool = true

@description('Run the deployment script that creates the credentials key if it does not exist, with its temporary Key Vault role. The azd postprovision hook deletes that role afterwards and sets GENERATE_CREDENTIALS_KEY=false, so later provisions create neither again.')
param generateCredentialsKey bool = true

@description('E-mail address the alert rules notify (through one action group). Empty: the rules are created without an action, and fire in the portal only.')
param alertEmail string = ''

@description('Client id of the Entra app registration that signs admins in (ADMIN_AUTH_CLIENT_ID; docs/deploy.md, "Who can use the admin routes"). Set: App Service authentication guards the whole app and the admin routes want a signed-in principal with the app role. Empty: no App Service authentication; the admin routes are closed unless ADMIN_API_KEY is set.')
param adminAuthClientId string = ''

@description('Give the app identity "Azure Service Bus Data Owner" on the registrations queue so the scale controller can read the queue length (see the role assignment below). With false, Flex falls back to scaling on the age of the first message only.')
param grantQueueLengthToScaleController bool = true

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'on24-dynamics-integration'
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
// The state tables the app uses (shared/store/tables.py TABLE_SUFFIXES) and its containers: rejected bodies and
// PullMetrics' per-webinar match indexes (shared/store/blobs.py).
var stateTableSuffixes = [
  'orgs'
  'ledger'
  'syncstate'
]
var rejectedContainerName = toLower('${stateTablePrefix}rejected')
var matchIndexContainerName = toLower('${stateTablePrefix}metrics')

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---- identities ---------------------------------------------------------------------------------------------------

// The function app's only identity: storage, Service Bus, Key Vault, Application Insights and Dataverse all see this
// principal. Its client id is what the Dataverse application user is created from.
resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: tags
}

// Used only by the deployment script that generates the credentials key; the app never runs as it.
resource keygenIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-keygen-${resourceToken}'
  location: location
  tags: tags
}

// ---- monitoring ---------------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion only with Entra ID tokens (APPLICATIONINSIGHTS_AUTHENTICATION_STRING below); the instrumentation key
    // in the connection string alone cannot write telemetry.
    DisableLocalAuth: true
  }
}

// ---- storage ------------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'st' plus uniqueString(), 15 lowercase letters and digits, which is valid; checkov cannot evaluate the interpolation.
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over the public endpoint; every request needs an Entra token (shared keys are off). A VNet variant would add private endpoints.
  // checkov:skip=CKV_AZURE_59: same reason: public network access is needed without VNet integration; access is identity-only.
  // checkov:skip=CKV_AZURE_206: the SKU is the storageSku parameter (LRS by default: three copies in one datacentre). Losing the account in a regional disaster costs re-entering org credentials; ON24 treats a repeated registration as an update of the same registrant, so a lost ledger does not duplicate anyone. Choose Standard_ZRS or Standard_GZRS for more.
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Identity-only: AzureWebJobsStorage__credential=managedidentity, the state tables and the deployment container
    // all use Entra tokens.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex Consumption pulls the app package from this container (functionAppConfig.deployment.storage).
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Bodies of rejected Service Bus messages (RegisterAttendee keeps them so nothing is lost).
resource rejectedContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: rejectedContainerName
  properties: {
    publicAccess: 'None'
  }
}

// PullMetrics' match index per webinar (registrant ids, keyed email hashes and check-in hashes; no email or name).
resource matchIndexContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: matchIndexContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The app also creates missing tables at start; creating them here gives them a known owner and name.
resource stateTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for suffix in stateTableSuffixes: {
    parent: tableService
    name: '${stateTablePrefix}${suffix}'
  }
]

// ---- Service Bus --------------------------------------------------------------------------------------------------

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  // Local (SAS) authentication stays on: the Dataverse service endpoint signs in with a SAS key (Plug-in
  // Registration Tool). The function app uses its identity. Service Bus itself creates the namespace-wide
  // RootManageSharedAccessKey rule (Manage, Send, Listen) with every namespace; this template neither creates,
  // uses nor outputs it. Whoever may list the namespace's keys (Owner, Contributor) can read it: README
  // "Service Bus keys" says how to rotate it and keep it unused. The one rule made here is queue-scoped, Send-only.
  // Public network access stays on: Dataverse, a Microsoft cloud service, posts from outside any virtual network.
  name: 'sb-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: serviceBusSku
    tier: serviceBusSku
  }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: false
  }
}

resource registrationsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: registrationsQueueName
  properties: {
    // Longer than one delivery's work (lease + retry budget + one ON24 call); the Functions host also renews the
    // lock while the function runs (host.json maxAutoLockRenewalDuration).
    lockDuration: 'PT${queueLockDurationSeconds}S'
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

// The namespace's metrics (DeadletteredMessages, ActiveMessages, ...) in Log Analytics, for the dead-letter alert in
// docs/queries.kql (table AzureMetrics).
resource serviceBusMetrics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'metrics-to-log-analytics'
  scope: serviceBus
  properties: {
    workspaceId: logAnalytics.id
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// Dataverse's Service Bus service endpoint signs in with SAS. Send only, and scoped to this queue: the key can post
// registrations and nothing else. Its key is never a template output; see README "Dataverse service endpoint".
resource dataverseSendRule 'Microsoft.ServiceBus/namespaces/queues/authorizationRules@2024-01-01' = if (createDataverseSendRule) {
  parent: registrationsQueue
  name: 'dataverse-send'
  properties: {
    rights: [
      'Send'
    ]
  }
}

// ---- Key Vault ----------------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration and the deployment script reach the vault over its public endpoint; every call needs an Entra token and an RBAC role on the secret.
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: public network access stays on without a virtual network.
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Losing the key makes every stored credential unreadable; purge protection keeps a deleted vault recoverable.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Generates the credentials key once: base64 of 32 bytes from the operating system's CSPRNG (Python's secrets
// module reads os.urandom). Bicep itself cannot make random bytes (newGuid() is 122 random bits rendered as text and
// is re-evaluated on every deployment), so a deployment script does it. The script never overwrites an existing
// secret, so re-running `azd provision` never rotates the key behind the app's back; the value is written to a file
// on the script container's tmpfs, passed to `az keyvault secret set --file`, never echoed and never returned as
// an output. The container and its storage are deleted when the script succeeds.
resource generateCredentialsKeyScript 'Microsoft.Resources/deploymentScripts@2023-08-01' = if (generateCredentialsKey) {
  name: 'generate-credentials-key-${resourceToken}'
  location: location
  tags: tags
  kind: 'AzureCLI'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${keygenIdentity.id}': {}
    }
  }
  properties: {
    azCliVersion: '2.63.0'
    timeout: 'PT15M'
    retentionInterval: 'PT1H'
    cleanupPreference: 'OnSuccess'
    environmentVariables: [
      {
        name: 'VAULT_NAME'
        value: keyVault.name
      }
      {
        name: 'SECRET_NAME'
        value: credentialsKeySecretName
      }
    ]
    scriptContent: loadTextContent('scripts/generate-credentials-key.sh')
  }
  dependsOn: [
    keygenSecretsOfficer
  ]
}

resource credentialsKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: keyVault
  name: credentialsKeySecretName
}

// ---- Flex Consumption function app --------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption requires at least two always-ready instances per function (billed while idle). Without it a zone outage delays work, it does not lose it: Service Bus redelivers registrations and the next timer run resumes PullMetrics from its stored bookmark.
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP endpoint (the package comes from the deployment blob container) and ARM rejects siteConfig.ftpsState on Flex sites (error 51021), so it is left unset.
  // checkov:skip=CKV_AZURE_17: client certificates are not how admins authenticate here (Entra sign-in through App Service authentication, or the app's admin key).
  // checkov:skip=CKV_AZURE_222: the admin routes and the Functions host must be reachable without a virtual network; the app refuses every admin request without a signed-in admin or the admin key.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per function from zero; there is no instance count to pin for failover.
  // checkov:skip=CKV_AZURE_18: siteConfig.http20Enabled is left unset: ARM refuses some siteConfig properties on Flex Consumption sites depending on the region (error 51021) and Microsoft's Flex quickstarts set only minTlsVersion.
  // checkov:skip=CKV_AZURE_67: same property as CKV_AZURE_18 (the HTTP version); unset for the same reason, a deployment that fails in some regions costs more than HTTP/2 on the admin routes gains.
  // checkov:skip=CKV_AZURE_213: health check pings are an App Service feature; a Flex Consumption app scales to zero and has no always-on endpoint to probe.
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // A Key Vault reference in an app setting (ADMIN_API_KEY, when an operator chooses the admin key) is read with
    // this identity: the app has no system-assigned one.
    keyVaultReferenceIdentity: appIdentity.id
    // siteConfig holds only what Microsoft's Flex Consumption quickstarts set (minTlsVersion) and the app settings.
    // ARM rejects other siteConfig properties on Flex sites (error 51021), and which ones depends on the region:
    // ftpsState, alwaysOn, linuxFxVersion and http20Enabled among them. The runtime and scale live in
    // functionAppConfig below.
    siteConfig: {
      // TLS 1.2 at least for every client of the admin routes (the platform default on new apps; stated, not assumed).
      minTlsVersion: '1.2'
      // Every setting the code (shared/settings.py) and the bindings (function.json %NAME% and connection prefixes)
      // need; tests/infra/test_settings_coverage.py fails if one is missing. Flex Consumption rejects or ignores the
      // classic FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION / WEBSITE_* settings: the runtime and the scale
      // limit live in functionAppConfig below.
      appSettings: [
        // Host storage through the identity (timer leases, host keys, the deployment package).
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: appIdentity.properties.clientId
        }
        // RegisterAttendee's trigger: connection "ServiceBusConnection" through the identity.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: '${serviceBus.name}.servicebus.windows.net'
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: appIdentity.properties.clientId
        }
        // Binding expressions: the host resolves %NAME% from app settings only, never from code defaults.
        {
          name: 'REGISTRATIONS_QUEUE'
          value: registrationsQueue.name
        }
        {
          name: 'PULL_METRICS_SCHEDULE'
          value: pullMetricsSchedule
        }
        {
          name: 'RETRY_PARKED_SCHEDULE'
          value: retryParkedSchedule
        }
        // The app's own settings (shared/settings.py).
        {
          name: 'STATE_TABLE_PREFIX'
          value: stateTablePrefix
        }
        {
          name: 'KEY_VAULT_URL'
          value: keyVault.properties.vaultUri
        }
        {
          name: 'CREDENTIALS_KEY_SECRET_NAME'
          value: credentialsKeySecretName
        }
        {
          name: 'DATAVERSE_URL'
          value: dataverseUrl
        }
        {
          name: 'REJECTED_RETENTION_DAYS'
          value: '${rejectedRetentionDays}'
        }
        // POST .../pull answers 202 after this many seconds of pulling (HTTP functions must answer within 230 s).
        {
          name: 'ON_DEMAND_PULL_BUDGET_SECONDS'
          value: '60'
        }
        // DefaultAzureCredential picks the user-assigned identity by this client id (Table Storage, Key Vault, Dataverse).
        {
          name: 'AZURE_CLIENT_ID'
          value: appIdentity.properties.clientId
        }
        // A sync main runs on the worker's thread pool; one thread per concurrent Service Bus delivery
        // (host.json extensions.serviceBus.maxConcurrentCalls). Python's default would be min(32, CPUs + 4).
        {
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: '16'
        }
        // OpenTelemetry (host.json telemetryMode): host and worker export to Application Insights with Entra ID.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
        }
        // The Python worker configures azure-monitor-opentelemetry itself and streams its logs (with their attributes)
        // directly, so the host does not log them a second time.
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        // Table Storage calls are already traced by the Azure SDK instrumentation; requests/urllib3 would trace each a
        // second time.
        {
          name: 'OTEL_PYTHON_DISABLED_INSTRUMENTATIONS'
          value: 'requests,urllib,urllib3'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
    // The host starts as soon as the site exists: let its identity's roles be in place first.
    hostBlobOwner
    stateTableContributor
    queueReceiver
    secretReader
    telemetryPublisher
  ]
}

// App Service authentication ("Easy Auth") in front of the whole app, when an app registration is given. The admin
// routes are authLevel anonymous: the platform signs admins in (and validates Entra tokens of flows), sets
// X-MS-CLIENT-PRINCIPAL (stripping any a client sends) and WEBSITE_AUTH_ENABLED, and the app checks the app role
// (shared/entrypoints/admin_auth.py). Browsers without a session go to the sign-in page; a call with
// X-Requested-With: XMLHttpRequest (the admin page's) gets 401 instead. Without a client secret the platform signs
// users in with ID tokens (the registration enables ID token issuance: docs/deploy.md); tokens are not stored.
resource functionAppAuth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(adminAuthClientId)) {
  // checkov:skip=CKV_AZURE_13: checkov reads every Microsoft.Web/sites/config as a site; this resource IS the site's App Service authentication (authsettingsV2).
  // checkov:skip=CKV_AZURE_63: checkov reads this authsettingsV2 document as a site; HTTP logging is a site setting, not one of authentication's.
  // checkov:skip=CKV_AZURE_65: checkov reads this authsettingsV2 document as a site; detailed error messages are a site setting, not one of authentication's.
  // checkov:skip=CKV_AZURE_66: checkov reads this authsettingsV2 document as a site; failed request tracing is a site setting, not one of authentication's.
  // checkov:skip=CKV_AZURE_80: checkov reads this authsettingsV2 document as a site; a .NET version is a site setting (and this app is Python).
  // checkov:skip=CKV_AZURE_88: checkov reads this authsettingsV2 document as a site; Azure Files is a site setting (Flex Consumption keeps its package in blob storage).
  // checkov:skip=CKV_AZURE_222: checkov reads this authsettingsV2 document as a site; public network access is the site's (see the site's own skip).
  // checkov:skip=CKV_AZURE_70: checkov reads this authsettingsV2 document as a site and its HTTPS-only check crashes on it (KeyError 'properties'); the site itself sets httpsOnly and this document sets httpSettings.requireHttps.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: adminAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${adminAuthClientId}'
            adminAuthClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

// ---- role assignments (least privilege; each says why) ------------------------------------------------------------

// Storage Blob Data Owner on the account: the Functions host keeps its leases (PullMetrics timer singleton), host keys
// and locks in blobs (AzureWebJobsStorage with an identity needs Blob Data Owner), Flex Consumption reads the app
// package from the deployment container, RegisterAttendee writes rejected message bodies to the
// `<STATE_TABLE_PREFIX>rejected` container, and PullMetrics keeps its match indexes in `<STATE_TABLE_PREFIX>metrics`.
// The host needs no queue role: the app has no blob or queue triggers.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage, deployment package, rejected-message and match-index blobs'
  }
}

// Storage Table Data Contributor on the account: every function reads and writes the state tables (orgs, ledger,
// syncstate) and the app creates missing tables at start; the account holds nothing but this app's host files and
// state, so account scope grants nothing beyond them.
resource stateTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'State tables: org credentials, registration ledger, sync state'
  }
}

// Azure Service Bus Data Receiver on the queue: RegisterAttendee's trigger receives and settles messages.
resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registrationsQueue.id, appIdentity.id, roles.serviceBusDataReceiver)
  scope: registrationsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'RegisterAttendee Service Bus trigger'
  }
}

// Azure Service Bus Data Owner on the queue (not the namespace): the scale controller reads the queue's runtime
// properties (active message count) to decide how many instances RegisterAttendee needs, and that call needs the
// Manage right, which no narrower built-in role carries (Service Bus extension ServiceBusMetricsProvider; Microsoft
// lists Data Owner for triggers in "Service Bus bindings: identity-based connections"). Without it the trigger still
// works and scaling falls back to the age of the first message.
resource queueScaleReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantQueueLengthToScaleController) {
  name: guid(registrationsQueue.id, appIdentity.id, roles.serviceBusDataOwner)
  scope: registrationsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Scale controller reads the queue length (Manage right)'
  }
}

// Key Vault Secrets User on the one secret (not the vault): StoreCredentials, RegisterAttendee and PullMetrics read
// the credentials key's versions to seal and open org credentials. The app never writes the secret.
resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, credentialsKeySecretName, appIdentity.id, roles.keyVaultSecretsUser)
  scope: credentialsKeySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Read the credentials encryption key'
  }
  dependsOn: [
    generateCredentialsKeyScript
  ]
}

// Key Vault Secrets Officer on the vault for the key-generation identity only, and only for as long as the script
// needs it: the deployment script checks whether the secret exists and creates it once. Vault scope because the
// secret does not exist before the script runs (a role cannot be scoped to a secret that is not there yet), and
// Azure RBAC has no expiring assignment outside PIM. So the assignment is temporary by procedure: its id is an
// output, the azd postprovision hook (infra/scripts/postprovision.sh) deletes it as the deploying user (who could
// create it, so may delete it) and sets GENERATE_CREDENTIALS_KEY=false so the next provision does not create it
// again. Until then, anyone able to attach id-keygen to a resource could read or replace the key; afterwards the
// identity holds no role. Without azd, delete it by hand (README "Deploying to Azure").
resource keygenSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (generateCredentialsKey) {
  name: guid(keyVault.id, keygenIdentity.id, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: keygenIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Deployment script creates the credentials key once'
  }
}

// Monitoring Metrics Publisher on Application Insights: local authentication is off, so the host and the Python
// worker send telemetry with the identity's Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Entra ID authenticated telemetry ingestion'
  }
}

// ---- alerts (docs/queries.kql, deployed) ---------------------------------------------------------------------------

// The five alert queries of docs/queries.kql, each a log search alert that fires when its query returns a row (the
// queries are written so that any row is a problem). Each rule's query is the same text as in docs/queries.kql:
// tests/infra/test_alerts.py compares them, so a change is made in both places. The dead-letter query reads the
// Service Bus metrics in the Log Analytics workspace (scope 'workspace', diagnostic setting above); the others read
// the app's traces in Application Insights (scope 'insights'). Windows match each query's own ago(); the token query is evaluated once a day.
var alertRules = [
  {
    // docs/queries.kql query 1; tests/infra/test_alerts.py keeps the text identical.
    name: 'failed-registrations'
    title: 'Failed registrations per org'
    description: 'RegisterAttendee recorded a permanent failure (outcome failed): the registration, ledger row and CRM say why. docs/operations.md.'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    scope: 'insights'
    query: '''
traces
| where timestamp > ago(1h)
| where isnotempty(customDimensions.outcome) and isnotempty(customDimensions.registration_id)
| extend org_id = tostring(customDimensions.org_id),
         registration_id = tostring(customDimensions.registration_id),
         outcome = tostring(customDimensions.outcome),
         reason = tostring(customDimensions.reason)
| where outcome == "failed"
| summarize failed = count(), registrations = make_set(registration_id, 20), reasons = make_set(reason, 5)
    by org_id
| order by failed desc
'''
  }
  {
    // docs/queries.kql query 2; tests/infra/test_alerts.py keeps the text identical.
    name: 'dead-letter-growth'
    title: 'Dead-letter queue growing'
    description: 'Messages reached the registrations dead-letter queue after maxDeliveryCount deliveries: fix the cause, then python -m tools.replay dead-letters.'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT2H'
    scope: 'workspace'
    query: '''
AzureMetrics
| where TimeGenerated > ago(2h)
| where ResourceProvider == "MICROSOFT.SERVICEBUS" and MetricName == "DeadletteredMessages"
| summarize dead_letters = max(Maximum) by Resource, bin(TimeGenerated, 15m)
| order by TimeGenerated asc
| serialize
| extend growth = dead_letters - prev(dead_letters, 1, dead_letters)
| where TimeGenerated > ago(30m) and growth > 0
'''
  }
  {
    // docs/queries.kql query 3; tests/infra/test_alerts.py keeps the text identical.
    name: 'metrics-behind'
    title: 'PullMetrics behind schedule'
    description: 'No PullMetrics run in 45 minutes, webinars carried over in each of the last 4 runs, or orgs failed in the last run.'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    scope: 'insights'
    query: '''
let window = 1h;
let runs = traces
    | where timestamp > ago(window)
    | where isnotempty(customDimensions.left_for_next_run)
    | extend left_for_next_run = toint(customDimensions.left_for_next_run),
             orgs_failed = tostring(customDimensions.orgs_failed),
             written = toint(customDimensions.written),
             duration_ms = todouble(customDimensions.duration_ms);
let last_run = toscalar(runs | summarize max(timestamp));
union
    (print problem = "no PullMetrics run finished in the last 45 minutes", detail = tostring(last_run)
     | where isnull(last_run) or last_run < ago(45m)),
    (runs
     | top 4 by timestamp desc
     | summarize runs = count(), backlogged = countif(left_for_next_run > 0), left = max(left_for_next_run)
     | where runs == 4 and backlogged == 4
     | project problem = "webinars carried over in each of the last 4 runs", detail = strcat(left, " left")),
    (runs
     | top 1 by timestamp desc
     | where isnotempty(orgs_failed)
     | project problem = "orgs failed in the last run", detail = orgs_failed)
'''
  }
  {
    // docs/queries.kql query 4; tests/infra/test_alerts.py keeps the text identical.
    name: 'token-attention'
    title: 'ON24 tokens about to be disabled or refused'
    description: 'An org\'s ON24 token is idle for 45 days or more, or was refused: docs/operations.md, When a token is about to expire.'
    severity: 2
    evaluationFrequency: 'P1D'
    windowSize: 'P1D'
    scope: 'insights'
    query: '''
traces
| where timestamp > ago(1d)
| where isnotempty(customDimensions.token_state)
| extend org_id = tostring(customDimensions.org_id),
         token_state = tostring(customDimensions.token_state),
         idle_days = toint(customDimensions.idle_days)
| summarize arg_max(timestamp, token_state, idle_days) by org_id
| order by idle_days desc
'''
  }
  {
    // docs/queries.kql query 5; tests/infra/test_alerts.py keeps the text identical.
    name: 'rejected-messages'
    title: 'Rejected queue messages'
    description: 'RegisterAttendee could not parse a message and kept it whole: fix the producer, then python -m tools.replay rejected.'
    severity: 3
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    scope: 'insights'
    query: '''
traces
| where timestamp > ago(1h)
| where tostring(customDimensions.outcome) == "rejected"
| extend reason = tostring(customDimensions.reason), message_id = tostring(customDimensions.message_id)
| summarize rejected = count(), messages = make_set(message_id, 20) by reason
| order by rejected desc
'''
  }
]

// One action group: e-mail to alertEmail (the common alert schema gives the rule, the query and a link to results).
resource alertActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'on24alerts'
    enabled: true
    emailReceivers: [
      {
        name: 'operations'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in alertRules: {
    name: 'alert-${rule.name}-${resourceToken}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.title
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        (rule.scope == 'workspace') ? logAnalytics.id : appInsights.id
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: empty(alertEmail) ? [] : [
          alertActionGroup.id
        ]
      }
    }
  }
]

// ---- outputs (no secrets) -----------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.properties.defaultHostName}'
@description('Client (application) id of the app identity: create the Dataverse application user from it.')
output APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output APP_IDENTITY_PRINCIPAL_ID string = appIdentity.properties.principalId
output SERVICE_BUS_NAMESPACE string = serviceBus.name
output SERVICE_BUS_QUEUE string = registrationsQueue.name
@description('Name of the Send-only SAS rule for the Dataverse service endpoint (its key is not an output).')
output SERVICE_BUS_SEND_RULE string = createDataverseSendRule ? dataverseSendRule.name : ''
output KEY_VAULT_NAME string = keyVault.name
@description('The key-generation identity\'s temporary Key Vault role assignment, which the postprovision hook deletes (empty when not created).')
output KEYGEN_ROLE_ASSIGNMENT_ID string = generateCredentialsKey ? keygenSecretsOfficer.id : ''
output STORAGE_ACCOUNT_NAME string = storage.name
output APPLICATIONINSIGHTS_NAME string = appInsights.name
output LOG_ANALYTICS_WORKSPACE_ID string = logAnalytics.id
