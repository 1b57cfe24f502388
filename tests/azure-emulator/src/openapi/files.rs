//! The spec files the emulator validates against, embedded from the repository's `specs/azure` (verbatim copies,
//! provenance in `specs/provenance.json`): each served operation's file and every file its `$ref`s reach.

/// `(path under specs/azure, text)`.
macro_rules! spec_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../../specs/azure/", $path)))
    };
}

pub const FILES: &[(&str, &str)] = &[
    spec_file!("storage/resource-manager/Microsoft.Storage/stable/2023-05-01/storage.json"),
    spec_file!("storage/resource-manager/Microsoft.Storage/stable/2023-05-01/common.json"),
    spec_file!("storage/resource-manager/Microsoft.Storage/stable/2023-05-01/privatelinks.json"),
    spec_file!("msi/resource-manager/Microsoft.ManagedIdentity/stable/2023-01-31/ManagedIdentity.json"),
    spec_file!("resources/resource-manager/Microsoft.Features/stable/2021-07-01/features.json"),
    spec_file!("resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json"),
    spec_file!("keyvault/data-plane/Microsoft.KeyVault/stable/7.4/keys.json"),
    spec_file!("keyvault/data-plane/Microsoft.KeyVault/stable/7.4/common.json"),
    spec_file!("common-types/resource-management/v1/types.json"),
    spec_file!("common-types/resource-management/v1/privatelinks.json"),
    spec_file!("common-types/resource-management/v2/types.json"),
    spec_file!("common-types/resource-management/v4/types.json"),
    spec_file!("common-types/resource-management/v5/types.json"),
];
