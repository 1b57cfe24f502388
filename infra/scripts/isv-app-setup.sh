#!/usr/bin/env bash
# One-time ISV set-up in Microsoft Entra ID (Graph), the part Bicep does not do (docs/deploy.md, steps 1 and 3):
#
#   isv-app-setup.sh app  --name <display name>
#       Creates (or finds) the multi-tenant app registration the customers install. Prints appClientId and
#       appObjectId for infra/main.parameters.json. Needs Application Developer (or higher) in the ISV tenant.
#
#   isv-app-setup.sh link --app-object-id <id> --resource-group <rg> [--deployment <name>] [--fic-mode verify|ensure]
#       After `az deployment sub create`: adds the CMK user-assigned identity as the app's federated identity
#       credential, and gives the function app's system identity the Graph access the handler needs:
#         verify mode: app role 'Application.Read.All' (read the app's federated credentials);
#         ensure mode: app role 'Application.ReadWrite.OwnedBy' and ownership of the app (upsert the credential).
#       Granting a Graph app role needs Privileged Role Administrator (or Global Administrator): an admin consent.
#
# Every step reads first and only writes on a difference, so re-running is safe. Uses only `az` (with `az rest` for
# Graph calls the CLI lacks); the cloud (public, US Gov, China) is taken from `az cloud show`.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

die() { echo "isv-app-setup: $*" >&2; exit 1; }

graph_app_id="00000003-0000-0000-c000-000000000000" # Microsoft Graph's well-known application id

cloud_endpoints() {
  graph="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
  graph="${graph%/}"
  login="$(az cloud show --query endpoints.activeDirectory -o tsv)"
  login="${login%/}"
  case "$(az cloud show --query name -o tsv)" in
    AzureUSGovernment) audience="api://AzureADTokenExchangeUSGov" ;;
    AzureChinaCloud) audience="api://AzureADTokenExchangeChina" ;;
    *) audience="api://AzureADTokenExchange" ;;
  esac
}

cmd_app() {
  local name=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name) name="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "$name" ]] || usage
  local object_id
  object_id="$(az ad app list --display-name "$name" --query '[0].id' -o tsv)"
  if [[ -z "$object_id" ]]; then
    object_id="$(az ad app create --display-name "$name" --sign-in-audience AzureADMultipleOrgs --query id -o tsv)"
    echo "created app registration $name" >&2
  else
    az ad app update --id "$object_id" --sign-in-audience AzureADMultipleOrgs
    echo "reusing app registration $name" >&2
  fi
  echo "appClientId=$(az ad app show --id "$object_id" --query appId -o tsv)"
  echo "appObjectId=$object_id"
}

# grant_app_role SP_OBJECT_ID ROLE_VALUE: assigns a Microsoft Graph application permission (admin consent).
grant_app_role() {
  local principal="$1" role="$2" graph_sp role_id existing
  graph_sp="$(az ad sp show --id "$graph_app_id" --query id -o tsv)"
  role_id="$(az ad sp show --id "$graph_app_id" --query "appRoles[?value=='$role'].id | [0]" -o tsv)"
  [[ -n "$role_id" ]] || die "Microsoft Graph has no app role $role"
  existing="$(az rest --method GET --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
    --query "value[?appRoleId=='$role_id'].id | [0]" -o tsv)"
  if [[ -n "$existing" ]]; then
    echo "function app identity already has $role" >&2
    return
  fi
  az rest --method POST --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}" >/dev/null
  echo "granted $role to the function app identity" >&2
}

cmd_link() {
  local app_object_id="" resource_group="" deployment="main" fic_mode="verify"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --app-object-id) app_object_id="$2"; shift 2 ;;
      --resource-group) resource_group="$2"; shift 2 ;;
      --deployment) deployment="$2"; shift 2 ;;
      --fic-mode) fic_mode="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "$app_object_id" && -n "$resource_group" ]] || usage
  [[ "$fic_mode" == verify || "$fic_mode" == ensure ]] || die "--fic-mode must be verify or ensure"
  cloud_endpoints

  # Outputs of the subscription-scope deployment (az deployment sub create --name <deployment>).
  local outputs uami_id uami_principal function_principal tenant fic_name
  outputs="$(az deployment sub show --name "$deployment" --query properties.outputs -o json)"
  uami_id="$(jq -r .cmkIdentityResourceId.value <<<"$outputs")"
  uami_principal="$(jq -r .cmkIdentityPrincipalId.value <<<"$outputs")"
  function_principal="$(jq -r .functionAppPrincipalId.value <<<"$outputs")"
  [[ "$(jq -r .resourceGroupName.value <<<"$outputs")" == "$resource_group" ]] ||
    die "deployment $deployment did not create resource group $resource_group"
  tenant="$(az account show --query tenantId -o tsv)"
  fic_name="cmk-${uami_id##*/}" # the handler's default CMK_FIC_NAME

  # The federated credential: issuer and subject must match the identity's token exactly (no whitespace).
  az rest --method PATCH \
    --url "$graph/v1.0/applications/$app_object_id/federatedIdentityCredentials(name='$fic_name')" \
    --headers "Content-Type=application/json" "Prefer=create-if-missing" \
    --body "{\"name\":\"$fic_name\",\"issuer\":\"$login/$tenant/v2.0\",\"subject\":\"$uami_principal\",\"audiences\":[\"$audience\"],\"description\":\"CMK onboarding: cross-tenant customer-managed keys\"}" >/dev/null
  echo "federated credential $fic_name: issuer $login/$tenant/v2.0, subject $uami_principal, audience $audience" >&2

  if [[ "$fic_mode" == verify ]]; then
    grant_app_role "$function_principal" 'Application.Read.All'
  else
    grant_app_role "$function_principal" 'Application.ReadWrite.OwnedBy'
    local owned
    owned="$(az rest --method GET --url "$graph/v1.0/applications/$app_object_id/owners" \
      --query "value[?id=='$function_principal'].id | [0]" -o tsv)"
    if [[ -z "$owned" ]]; then
      az rest --method POST --url "$graph/v1.0/applications/$app_object_id/owners/\$ref" \
        --headers "Content-Type=application/json" \
        --body "{\"@odata.id\":\"$graph/v1.0/directoryObjects/$function_principal\"}" >/dev/null
      echo "function app identity is now an owner of the app" >&2
    fi
  fi
}

command -v az >/dev/null || die "needs the Azure CLI (az)"
case "${1:-}" in
  app) shift; cmd_app "$@" ;;
  link) shift; command -v jq >/dev/null || die "link needs jq"; cmd_link "$@" ;;
  *) usage ;;
esac
