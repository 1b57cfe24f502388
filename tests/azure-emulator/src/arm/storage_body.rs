//! The shape of a `StorageAccounts_Update` body (spec `StorageAccountUpdateParameters`, 2023-05-01): unknown
//! members and wrong JSON types are refused the way the Storage RP's deserialiser refuses them.

use serde_json::Value;

use super::errors::ArmError;

/// A JSON shape: enough of Swagger to check member names and types.
#[derive(Debug)]
pub enum Shape {
    String,
    Bool,
    /// Members by name, with the spec's definition name for error messages.
    Object(&'static str, &'static [(&'static str, Shape)]),
    /// An object with free keys (`tags`) whose values have this shape.
    Map(&'static Shape),
    /// Anything (members the emulator stores but does not interpret).
    Any,
}

const ENCRYPTION_SERVICE: Shape = Shape::Object(
    "EncryptionService",
    &[("enabled", Shape::Bool), ("lastEnabledTime", Shape::String), ("keyType", Shape::String)],
);

const ENCRYPTION: Shape = Shape::Object(
    "Encryption",
    &[
        (
            "services",
            Shape::Object(
                "EncryptionServices",
                &[
                    ("blob", ENCRYPTION_SERVICE),
                    ("file", ENCRYPTION_SERVICE),
                    ("table", ENCRYPTION_SERVICE),
                    ("queue", ENCRYPTION_SERVICE),
                ],
            ),
        ),
        ("keySource", Shape::String),
        ("requireInfrastructureEncryption", Shape::Bool),
        (
            "keyvaultproperties",
            Shape::Object(
                "KeyVaultProperties",
                &[
                    ("keyname", Shape::String),
                    ("keyversion", Shape::String),
                    ("keyvaulturi", Shape::String),
                    ("currentVersionedKeyIdentifier", Shape::String),
                    ("lastKeyRotationTimestamp", Shape::String),
                    ("currentVersionedKeyExpirationTimestamp", Shape::String),
                ],
            ),
        ),
        (
            "identity",
            Shape::Object(
                "EncryptionIdentity",
                &[("userAssignedIdentity", Shape::String), ("federatedIdentityClientId", Shape::String)],
            ),
        ),
    ],
);

const USER_ASSIGNED: Shape =
    Shape::Object("UserAssignedIdentity", &[("principalId", Shape::String), ("clientId", Shape::String)]);

/// `StorageAccountUpdateParameters` with `properties` flattened as on the wire.
pub const UPDATE_PARAMETERS: Shape = Shape::Object(
    "StorageAccountUpdateParameters",
    &[
        ("sku", Shape::Object("Sku", &[("name", Shape::String), ("tier", Shape::String)])),
        ("tags", Shape::Map(&Shape::String)),
        (
            "identity",
            Shape::Object(
                "Identity",
                &[
                    ("principalId", Shape::String),
                    ("tenantId", Shape::String),
                    ("type", Shape::String),
                    ("userAssignedIdentities", Shape::Map(&USER_ASSIGNED)),
                ],
            ),
        ),
        ("kind", Shape::String),
        (
            "properties",
            Shape::Object(
                "StorageAccountPropertiesUpdateParameters",
                &[
                    ("customDomain", Shape::Any),
                    ("encryption", ENCRYPTION),
                    ("sasPolicy", Shape::Any),
                    ("keyPolicy", Shape::Any),
                    ("accessTier", Shape::String),
                    ("azureFilesIdentityBasedAuthentication", Shape::Any),
                    ("supportsHttpsTrafficOnly", Shape::Bool),
                    ("isSftpEnabled", Shape::Bool),
                    ("isLocalUserEnabled", Shape::Bool),
                    ("enableExtendedGroups", Shape::Bool),
                    ("networkAcls", Shape::Any),
                    ("largeFileSharesState", Shape::String),
                    ("routingPreference", Shape::Any),
                    ("allowBlobPublicAccess", Shape::Bool),
                    ("minimumTlsVersion", Shape::String),
                    ("allowSharedKeyAccess", Shape::Bool),
                    ("allowCrossTenantReplication", Shape::Bool),
                    ("defaultToOAuthAuthentication", Shape::Bool),
                    ("publicNetworkAccess", Shape::String),
                    ("immutableStorageWithVersioning", Shape::Any),
                    ("allowedCopyScope", Shape::String),
                    ("dnsEndpointType", Shape::String),
                ],
            ),
        ),
    ],
);

/// Checks `value` against `shape`. `null` is accepted everywhere (the deserialiser treats it as absent; inside
/// `userAssignedIdentities` it means "remove").
pub fn check(value: &Value, shape: &Shape, path: &str) -> Result<(), ArmError> {
    let type_error = |expected: &str| {
        ArmError::invalid_request_content(&format!(
            "Error converting value {value} to type '{expected}'. Path '{path}'"
        ))
    };
    match (shape, value) {
        (_, Value::Null) | (Shape::Any, _) => Ok(()),
        (Shape::String, Value::String(_)) => Ok(()),
        (Shape::Bool, Value::Bool(_)) => Ok(()),
        (Shape::Object(name, members), Value::Object(object)) => {
            for (key, member) in object {
                let child = join(path, key);
                let Some((_, member_shape)) = members.iter().find(|(m, _)| m.eq_ignore_ascii_case(key)) else {
                    return Err(ArmError::invalid_request_content(&format!(
                        "Could not find member '{key}' on object of type '{name}'. Path '{child}'"
                    )));
                };
                check(member, member_shape, &child)?;
            }
            Ok(())
        }
        (Shape::Map(inner), Value::Object(object)) => {
            object.iter().try_for_each(|(key, member)| check(member, inner, &format!("{path}['{key}']")))
        }
        (Shape::String, _) => Err(type_error("System.String")),
        (Shape::Bool, _) => Err(type_error("System.Boolean")),
        (Shape::Object(name, _), _) => Err(type_error(name)),
        (Shape::Map(_), _) => Err(type_error("Dictionary")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_member_is_named_with_its_path() {
        let body = json!({ "properties": { "encryption": { "keySource": "Microsoft.Keyvault", "keyVaultUrl": "x" } } });
        let error = check(&body, &UPDATE_PARAMETERS, "").unwrap_err();
        assert_eq!(error.code, "InvalidRequestContent");
        assert!(
            error
                .message
                .contains("'keyVaultUrl' on object of type 'Encryption'. Path 'properties.encryption.keyVaultUrl'"),
            "{}",
            error.message
        );
    }

    #[test]
    fn wrong_type_is_refused_and_nulls_pass() {
        let body = json!({ "properties": { "encryption": { "services": { "blob": { "enabled": "yes" } } } } });
        assert!(check(&body, &UPDATE_PARAMETERS, "").is_err());
        let body = json!({ "identity": { "type": "UserAssigned", "userAssignedIdentities": { "/x": null } } });
        assert!(check(&body, &UPDATE_PARAMETERS, "").is_ok());
    }
}
