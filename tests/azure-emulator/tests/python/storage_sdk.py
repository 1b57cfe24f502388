"""Independent client check: the official azure-mgmt-storage SDK reads and updates a storage account through the
emulated ARM, and prints what it deserialised as one JSON object on stdout.

Arguments come as JSON in the environment variable EMULATOR_SDK_ARGS (url, token, subscription, resourceGroup,
account, uami, appId, vaultUri, keyName); the token is minted by the Rust test.
"""

import json
import os
import sys
import time

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage import models

ARGS = json.loads(os.environ["EMULATOR_SDK_ARGS"])
# The emulator serves the 2023-05-01 shape; the SDK's own default is newer.
API_VERSION = "2023-05-01"
# The SDK refuses bearer tokens over http unless told per call; the header tells the emulator the original host.
PER_CALL = {
    "enforce_https": False,
    "headers": {"x-recording-upstream-base-uri": "https://management.azure.com"},
}


class MintedTokenCredential:
    """Hands out the token the test minted through the emulator, whatever the scope."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)

    def get_token_info(self, *scopes, options=None):
        return AccessTokenInfo(self._token, int(time.time()) + 3600)


def summary(account):
    encryption = account.encryption
    vault = encryption.key_vault_properties
    identity = account.identity
    return {
        "name": account.name,
        "kind": account.kind,
        "sku": account.sku.name,
        "identityType": identity.type if identity else None,
        "userAssigned": {
            key: {"principalId": value.principal_id, "clientId": value.client_id}
            for key, value in ((identity.user_assigned_identities or {}) if identity else {}).items()
        },
        "keySource": encryption.key_source,
        "keyVaultUri": vault.key_vault_uri if vault else None,
        "keyName": vault.key_name if vault else None,
        "keyVersion": vault.key_version if vault else None,
        "currentVersionedKeyIdentifier": vault.current_versioned_key_identifier if vault else None,
        "lastKeyRotationTimestamp": vault.last_key_rotation_timestamp.isoformat()
        if vault and vault.last_key_rotation_timestamp
        else None,
        "federatedIdentityClientId": encryption.encryption_identity.encryption_federated_identity_client_id
        if encryption.encryption_identity
        else None,
        "blobKeyType": encryption.services.blob.key_type if encryption.services and encryption.services.blob else None,
    }


def main():
    client = StorageManagementClient(
        MintedTokenCredential(ARGS["token"]),
        ARGS["subscription"],
        base_url=ARGS["url"],
        api_version=API_VERSION,
    )
    accounts = client.storage_accounts
    before = accounts.get_properties(ARGS["resourceGroup"], ARGS["account"], **PER_CALL)
    parameters = models.StorageAccountUpdateParameters(
        identity=models.Identity(
            type="UserAssigned",
            user_assigned_identities={ARGS["uami"]: models.UserAssignedIdentity()},
        ),
        encryption=models.Encryption(
            key_source="Microsoft.Keyvault",
            key_vault_properties=models.KeyVaultProperties(
                key_vault_uri=ARGS["vaultUri"], key_name=ARGS["keyName"], key_version=""
            ),
            encryption_identity=models.EncryptionIdentity(
                encryption_user_assigned_identity=ARGS["uami"],
                encryption_federated_identity_client_id=ARGS["appId"],
            ),
            services=models.EncryptionServices(
                blob=models.EncryptionService(enabled=True, key_type="Account"),
                file=models.EncryptionService(enabled=True, key_type="Account"),
            ),
        ),
    )
    updated = accounts.update(ARGS["resourceGroup"], ARGS["account"], parameters, **PER_CALL)
    after = accounts.get_properties(ARGS["resourceGroup"], ARGS["account"], **PER_CALL)
    json.dump({"before": summary(before), "updated": summary(updated), "after": summary(after)}, sys.stdout)


if __name__ == "__main__":
    main()
