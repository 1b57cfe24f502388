//! Contract v1: every fixture under `tests/data/messages` against both the Rust validator and the JSON Schema.
//!
//! Invalid fixtures are named `{ExpectedCode}--{slug}.json`; `{ExpectedCode}--config--{slug}.json` marks the ones only
//! the handler's configuration can reject (allow-list, identity-set names, the vault's cloud), and
//! `{ExpectedCode}--beyond-schema--{slug}.json` the ones JSON Schema cannot express (duplicate member names, a
//! `requestedAt` in the future); the schema must accept both kinds. For all others, schema-valid ⇔ validator-accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cmk_handler::cloud::Cloud;
use cmk_handler::config::{AllowedScope, IsvIdentity};
use cmk_handler::contract::{
    MAX_CLOCK_SKEW, ValidatedMessage, ValidationPolicy, parse_and_validate_at, parse_message_at,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// The validator's clock in these tests: shortly after every fixture's `requestedAt`.
const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn parse_and_validate(
    body: &[u8],
    policy: &ValidationPolicy,
) -> Result<cmk_handler::contract::ValidatedOnboarding, cmk_handler::contract::ValidationError> {
    parse_and_validate_at(body, policy, NOW)
}

/// Every kind of message (the fixtures hold onboardings and offboardings).
fn parse_message(
    body: &[u8],
    policy: &ValidationPolicy,
) -> Result<ValidatedMessage, cmk_handler::contract::ValidationError> {
    parse_message_at(body, policy, NOW)
}

fn data_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/messages").join(sub)
}

fn fixtures(sub: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir(sub))
        .expect("fixture folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "too few fixtures in {sub}");
    files
}

fn identity(n: u8) -> IsvIdentity {
    IsvIdentity {
        uami_resource_id: format!(
            "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami-{n}"
        ),
        uami_client_id: None,
        app_client_id: format!("{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-00000000000{n}"),
        app_object_id: format!("{n}{n}{n}{n}{n}{n}{n}{n}-1111-1111-1111-11111111111{n}"),
    }
}

fn policy() -> ValidationPolicy {
    ValidationPolicy {
        cloud: Cloud::Public,
        max_message_bytes: 262_144,
        allowed_scopes: vec![
            AllowedScope::parse("/subscriptions/33333333-3333-3333-3333-333333333333").unwrap(),
            AllowedScope::parse("/subscriptions/55555555-5555-5555-5555-555555555555/resourceGroups/tenant-b").unwrap(),
        ],
        default_identity: identity(1),
        identity_sets: BTreeMap::from([("eu".to_owned(), identity(2))]),
    }
}

fn schema_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/onboarding-message.v1.schema.json");
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the schema compiles")
}

/// Bytes that are not JSON are schema-invalid by definition.
fn schema_accepts(validator: &jsonschema::Validator, body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| validator.is_valid(&v))
}

#[test]
fn valid_fixtures_pass_both_the_validator_and_the_schema() {
    let (schema, policy) = (schema_validator(), policy());
    for (name, body) in fixtures("valid") {
        if let Err(e) = parse_message(&body, &policy) {
            panic!("{name}: rejected by the validator: {} {e}", e.code);
        }
        assert!(schema_accepts(&schema, &body), "{name}: rejected by the schema");
    }
}

#[test]
fn invalid_fixtures_fail_with_their_code_and_agree_with_the_schema() {
    let (schema, policy) = (schema_validator(), policy());
    let (mut config_only, mut beyond_schema) = (0, 0);
    for (name, body) in fixtures("invalid") {
        let (expected, rest) = name.split_once("--").expect("file name is {Code}--{slug}");
        let error = match parse_message(&body, &policy) {
            Ok(v) => panic!("{name}: accepted by the validator: {v:?}"),
            Err(e) => e,
        };
        assert_eq!(error.code, expected, "{name}: {error}");
        if rest.starts_with("config--") {
            config_only += 1;
            assert!(schema_accepts(&schema, &body), "{name}: configuration-only case must be schema-valid");
        } else if rest.starts_with("beyond-schema--") {
            beyond_schema += 1;
            assert!(schema_accepts(&schema, &body), "{name}: a case the schema cannot express must be schema-valid");
        } else {
            assert!(!schema_accepts(&schema, &body), "{name}: the schema accepts what the validator rejects");
        }
    }
    assert!(config_only >= 3, "the configuration-only cases are marked");
    assert!(beyond_schema >= 3, "the cases beyond JSON Schema are marked");
}

#[test]
fn normalises_case_and_form() {
    let body = std::fs::read(data_dir("valid").join("pinned-version-mixed-case.json")).unwrap();
    let v = parse_and_validate(&body, &policy()).unwrap();
    assert_eq!(v.customer_tenant_id, "22222222-aaaa-2222-2222-22222222222a");
    assert_eq!(v.key.vault_uri, "https://contoso-kv.vault.azure.net/");
    assert_eq!(v.key.vault_host, "contoso-kv.vault.azure.net");
    assert_eq!(v.key.vault_name(), "contoso-kv");
    assert!(!v.key.managed_hsm);
    assert_eq!(v.key.version.as_deref(), Some("0682afdd9c104f4285df20107e956cad"));
    assert_eq!(
        v.storage_account.arm_id(),
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata"
    );
    assert_eq!(v.requested_at.offset().whole_hours(), 2);
    assert_eq!(v.identity, identity(1));
    assert_eq!(v.identity_set, None);
}

#[test]
fn picks_the_named_identity_set_and_detects_managed_hsm() {
    let body = std::fs::read(data_dir("valid").join("named-identity-set.json")).unwrap();
    assert_eq!(parse_and_validate(&body, &policy()).unwrap().identity, identity(2));
    let body = std::fs::read(data_dir("valid").join("managed-hsm.json")).unwrap();
    let v = parse_and_validate(&body, &policy()).unwrap();
    assert!(v.key.managed_hsm);
    assert_eq!(v.key.vault_uri, "https://contoso-hsm.managedhsm.azure.net/");
    assert_eq!(v.key.version, None);
}

#[test]
fn the_vault_must_be_in_the_configured_cloud() {
    let body =
        std::fs::read(data_dir("invalid").join("InvalidVaultUri--config--us-government-vault-in-public-cloud.json"))
            .unwrap();
    let mut gov = policy();
    gov.cloud = Cloud::UsGovernment;
    assert_eq!(parse_and_validate(&body, &gov).unwrap().key.vault_host, "contoso-kv.vault.usgovcloudapi.net");
    let good = std::fs::read(data_dir("valid").join("minimal-automatic-key-version.json")).unwrap();
    assert_eq!(parse_and_validate(&good, &gov).unwrap_err().code, "InvalidVaultUri");
}

#[test]
fn rejects_messages_over_the_size_limit_before_parsing() {
    let good = std::fs::read(data_dir("valid").join("minimal-automatic-key-version.json")).unwrap();
    let mut small = policy();
    small.max_message_bytes = good.len() - 1;
    let error = parse_and_validate(&good, &small).unwrap_err();
    assert_eq!((error.code, error.field.as_str()), ("MessageTooLarge", "$"));
    small.max_message_bytes = good.len();
    assert!(parse_and_validate(&good, &small).is_ok());
    // Oversized garbage is still reported as too large, not as bad JSON: size is checked first.
    assert_eq!(parse_and_validate(&vec![b'x'; 262_145], &policy()).unwrap_err().code, "MessageTooLarge");
}

#[test]
fn requested_at_may_be_in_the_future_only_by_the_clock_skew() {
    let good = std::fs::read(data_dir("valid").join("minimal-automatic-key-version.json")).unwrap();
    let mut message: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let skew = time::Duration::try_from(MAX_CLOCK_SKEW).unwrap();
    let mut at = |t: OffsetDateTime| {
        message["requestedAt"] = t.format(&time::format_description::well_known::Rfc3339).unwrap().into();
        parse_and_validate(&serde_json::to_vec(&message).unwrap(), &policy())
    };
    assert!(at(NOW + skew).is_ok(), "within the skew");
    let error = at(NOW + skew + time::Duration::seconds(1)).unwrap_err();
    assert_eq!((error.code, error.field.as_str()), ("InvalidRequestedAt", "requestedAt"));
    assert!(at(NOW - time::Duration::days(365)).is_ok(), "the past is fine");
}

#[test]
fn duplicate_member_names_are_refused_with_the_name() {
    let body = std::fs::read(data_dir("invalid").join("InvalidJson--beyond-schema--duplicate-vault-uri.json")).unwrap();
    let error = parse_and_validate(&body, &policy()).unwrap_err();
    assert!(error.message.contains("duplicate member name \"vaultUri\""), "{error}");
    // serde_json alone would have taken the last one.
    let lenient: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lenient["key"]["vaultUri"], "https://fabrikam-kv.vault.azure.net/");
}

#[test]
fn replace_existing_key_defaults_to_false() {
    let body = std::fs::read(data_dir("valid").join("replace-existing-key.json")).unwrap();
    assert!(parse_and_validate(&body, &policy()).unwrap().replace_existing_key);
    let body = std::fs::read(data_dir("valid").join("null-optionals.json")).unwrap();
    assert!(!parse_and_validate(&body, &policy()).unwrap().replace_existing_key);
}

#[test]
fn names_the_offending_field() {
    let body = std::fs::read(data_dir("invalid").join("InvalidMessage--missing-vault-uri.json")).unwrap();
    assert_eq!(parse_and_validate(&body, &policy()).unwrap_err().field, "key.vaultUri");
    let body = std::fs::read(data_dir("invalid").join("InvalidMessage--customer-is-string.json")).unwrap();
    assert_eq!(parse_and_validate(&body, &policy()).unwrap_err().field, "customer");
}

#[test]
fn samples_are_valid_messages() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut policy = policy();
    policy.allowed_scopes = vec![
        AllowedScope::parse("/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers")
            .unwrap(),
    ];
    for name in ["onboarding-good.json", "onboarding-waiting-on-customer.json", "onboarding-new-account.json"] {
        let body = std::fs::read(samples.join(name)).unwrap();
        assert!(schema_accepts(&schema_validator(), &body), "{name}");
        parse_and_validate(&body, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let poison = std::fs::read(samples.join("onboarding-poison.json")).unwrap();
    assert!(parse_and_validate(&poison, &policy).is_err());
    assert!(!schema_accepts(&schema_validator(), &poison));
}

#[test]
fn an_offboarding_names_the_onboarding_it_ends_and_optionally_the_vault() {
    let body = std::fs::read(data_dir("valid").join("offboarding-minimal.json")).unwrap();
    let ValidatedMessage::Offboarding(offboarding) = parse_message(&body, &policy()).unwrap() else {
        panic!("an offboarding")
    };
    assert_eq!(offboarding.onboarding_id, "obd-2026-0001");
    assert_eq!(offboarding.customer_tenant_id, "22222222-2222-2222-2222-222222222222");
    assert_eq!(offboarding.key, None);
    assert_eq!(offboarding.identity, identity(1));
    let body = std::fs::read(data_dir("valid").join("offboarding-naming-the-vault.json")).unwrap();
    let ValidatedMessage::Offboarding(offboarding) = parse_message(&body, &policy()).unwrap() else {
        panic!("an offboarding")
    };
    assert_eq!(offboarding.key.unwrap().vault_host, "contoso-kv.vault.azure.net");
    // Callers that take onboardings only (the diagnosis, `cmkctl validate`) refuse it by its kind.
    let error = parse_and_validate(&body, &policy()).unwrap_err();
    assert_eq!((error.code, error.field.as_str()), ("UnexpectedMessageKind", "kind"));
    let body = std::fs::read(data_dir("valid").join("kind-onboarding-explicit.json")).unwrap();
    assert!(parse_and_validate(&body, &policy()).is_ok());
}

#[test]
fn create_names_location_sku_and_kind_of_a_new_account() {
    let body = std::fs::read(data_dir("valid").join("create-new-account.json")).unwrap();
    let onboarding = parse_and_validate(&body, &policy()).unwrap();
    let create = onboarding.create.expect("create is parsed");
    assert_eq!(
        (create.location.as_str(), create.sku.as_str(), create.kind.as_str()),
        ("westeurope", "Standard_LRS", "StorageV2")
    );
    let without = std::fs::read(data_dir("valid").join("minimal-automatic-key-version.json")).unwrap();
    assert_eq!(parse_and_validate(&without, &policy()).unwrap().create, None);
    let null = std::fs::read(data_dir("valid").join("create-null.json")).unwrap();
    assert_eq!(parse_and_validate(&null, &policy()).unwrap().create, None);
}
