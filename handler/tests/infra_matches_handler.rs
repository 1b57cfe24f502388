//! `infra/` deploys what the handler needs: every setting it reads and every grant in `permissions::PERMISSIONS`; and
//! the sample scenario the testbed runs on (`samples/scenario.json`) grants exactly what `infra/` grants.
//!
//! No Bicep compiler runs here, so this reads the Bicep source with a small scanner that knows strings, comments and
//! braces: enough to cut out `resource` blocks and the `appSettings` array. The grammar itself is checked by
//! `infra/checks/run.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use cmk_handler::config::SETTINGS;
use cmk_handler::permissions::{Condition, Grant, PERMISSIONS, ScopeKind};

/// Only the testbed sets it; production must never route Azure traffic elsewhere.
const TEST_ONLY_SETTINGS: &[&str] = &["CMK_TEST_PROXY_URL"];
const APP_SETTINGS_FILE: &str = "modules/function-app.bicep";
const ISV_SETUP_SCRIPT: &str = "scripts/isv-app-setup.sh";

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

fn read_infra(relative: &str) -> String {
    let path = infra_dir().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The source with string contents and comments blanked (same length, newlines kept), so braces, brackets and
/// keywords can be matched without being fooled by `'{'` or an apostrophe in a comment.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] != b'\n' {
                        out[i] = b' ';
                    }
                    i += 1;
                }
                out[i..(i + 2).min(bytes.len())].fill(b' ');
                i += 2;
            }
            b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' {
                    let step = if bytes[i] == b'\\' { 2 } else { 1 };
                    for j in i..(i + step).min(bytes.len()) {
                        if bytes[j] != b'\n' {
                            out[j] = b'_';
                        }
                    }
                    i += step;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 boundaries for ASCII delimiters")
}

/// Index just past the bracket that closes the one at `open` (in blanked code).
fn matching_close(code: &str, open: usize) -> usize {
    let (opening, closing) = match code.as_bytes()[open] {
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        other => panic!("not an opening bracket: {}", other as char),
    };
    let mut depth = 0usize;
    for (offset, &byte) in code.as_bytes()[open..].iter().enumerate() {
        if byte == opening {
            depth += 1;
        } else if byte == closing {
            depth -= 1;
            if depth == 0 {
                return open + offset + 1;
            }
        }
    }
    panic!("unbalanced bracket at byte {open}");
}

#[derive(Debug)]
struct ResourceBlock {
    file: String,
    symbol: String,
    /// `resource x '...' = if (cond) {` → `cond`.
    condition: Option<String>,
    body: String,
}

/// Every `resource <symbol> '<type>@<version>' = [if (...)] {…}` of the given type in one file (top level or nested).
fn resource_blocks(file: &str, source: &str, resource_type: &str) -> Vec<ResourceBlock> {
    let code = code_only(source);
    let mut blocks = Vec::new();
    let mut search_from = 0;
    while let Some(found) = code[search_from..].find("resource ") {
        let start = search_from + found;
        search_from = start + "resource ".len();
        let header_end = match code[start..].find('=') {
            Some(eq) => start + eq,
            None => break,
        };
        let header = &source[start..header_end];
        let mut words = header.split_whitespace().skip(1);
        let (Some(symbol), Some(quoted_type)) = (words.next(), words.next()) else { continue };
        if quoted_type.trim_matches('\'').split('@').next() != Some(resource_type) {
            continue;
        }
        let open = header_end + code[header_end..].find('{').expect("resource body");
        let between = source[header_end + 1..open].trim();
        let condition = between
            .strip_prefix("if")
            .map(|c| c.trim().trim_start_matches('(').trim_end_matches(')').trim().to_string());
        let close = matching_close(&code, open);
        blocks.push(ResourceBlock {
            file: file.to_string(),
            symbol: symbol.to_string(),
            condition,
            body: source[open..close].to_string(),
        });
    }
    blocks
}

/// `key: value` of a top-level property line inside a block body (first match).
fn property<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines().map(str::trim).find_map(|line| line.strip_prefix(&format!("{key}:")).map(str::trim))
}

/// `var <name> = '<literal>'` declarations of a file.
fn string_vars(source: &str) -> BTreeMap<String, String> {
    source
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("var ")?;
            let (name, value) = rest.split_once('=')?;
            let value = value.trim();
            (value.starts_with('\'') && value.ends_with('\'') && value.len() >= 2)
                .then(|| (name.trim().to_string(), value[1..value.len() - 1].to_string()))
        })
        .collect()
}

/// Every Bicep file under `infra/`, relative path → source.
fn all_bicep() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).expect("list infra") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "bicep") {
                let relative = path.strip_prefix(root).expect("under infra").to_string_lossy().replace('\\', "/");
                out.insert(relative, fs::read_to_string(&path).expect("read bicep"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&infra_dir(), &infra_dir(), &mut out);
    out
}

/// `name` → `value` source text of each entry of `var appSettings = [...]`.
fn declared_app_settings() -> BTreeMap<String, String> {
    let source = read_infra(APP_SETTINGS_FILE);
    let code = code_only(&source);
    let start = code.find("var appSettings = [").expect("function-app.bicep declares var appSettings");
    let open = start + code[start..].find('[').expect("array");
    let close = matching_close(&code, open);
    let mut settings = BTreeMap::new();
    let (array, array_code) = (&source[open + 1..close - 1], &code[open + 1..close - 1]);
    let mut from = 0;
    while let Some(found) = array_code[from..].find('{') {
        let entry_open = from + found;
        let entry_close = matching_close(array_code, entry_open);
        let entry = &array[entry_open..entry_close];
        let name = property(entry, "name").expect("entry has a name").trim_matches('\'').to_string();
        let value = property(entry, "value").expect("entry has a value").to_string();
        assert!(settings.insert(name.clone(), value).is_none(), "{name} is set twice");
        from = entry_close;
    }
    let site = resource_blocks(APP_SETTINGS_FILE, &source, "Microsoft.Web/sites");
    assert_eq!(site.len(), 1, "one function app");
    assert_eq!(property(&site[0].body, "appSettings"), Some("appSettings"), "the site uses var appSettings");
    settings
}

#[test]
fn every_setting_the_handler_reads_is_set_by_the_bicep() {
    let declared = declared_app_settings();
    let mut missing = Vec::new();
    for spec in SETTINGS.iter().filter(|s| !s.platform && !TEST_ONLY_SETTINGS.contains(&s.name)) {
        if !declared.contains_key(spec.name) {
            missing.push(spec.name);
        }
    }
    assert!(missing.is_empty(), "settings the handler reads but infra/ does not set: {missing:?}");
    let required: Vec<_> = SETTINGS.iter().filter(|s| s.required && !s.platform).map(|s| s.name).collect();
    assert!(required.iter().all(|name| declared.contains_key(*name)), "required settings: {required:?}");
}

#[test]
fn bicep_sets_no_unknown_handler_setting_and_keeps_the_defaults() {
    let declared = declared_app_settings();
    let known: BTreeMap<&str, Option<&str>> = SETTINGS.iter().map(|s| (s.name, s.default)).collect();
    for (name, value) in &declared {
        let is_handler_setting = name.starts_with("CMK_") || name.starts_with("OTEL_");
        if is_handler_setting {
            assert!(known.contains_key(name.as_str()), "infra/ sets {name}, which the handler does not read");
        }
        for test_only in TEST_ONLY_SETTINGS {
            assert_ne!(name, test_only, "the test seam must never be configured in Azure");
        }
        // A literal that differs from the documented default would silently change behaviour in Azure only.
        if let (Some(Some(default)), Some(literal)) =
            (known.get(name.as_str()), value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        {
            assert_eq!(literal, *default, "{name}: infra literal differs from the handler default");
        }
    }
    // The trigger reads the queue through %CMK_ONBOARDING_QUEUE% and connects with identity, not a secret.
    assert!(declared.contains_key("ServiceBusConnection__fullyQualifiedNamespace"));
    assert_eq!(declared.get("ServiceBusConnection__credential").map(String::as_str), Some("'managedidentity'"));
    assert_eq!(declared.get("AzureWebJobsStorage__credential").map(String::as_str), Some("'managedidentity'"));
    assert!(!declared.keys().any(|k| k == "AzureWebJobsStorage"
        || k.contains("ConnectionString") && k != "APPLICATIONINSIGHTS_CONNECTION_STRING"));
}

/// Where in `infra/` each scope kind's role assignments live: (file, `scope:` symbol, or None for the deployment's
/// own scope, as in the storage-access modules deployed into each allowed scope).
fn expected_locations(scope: ScopeKind) -> &'static [(&'static str, Option<&'static str>)] {
    match scope {
        ScopeKind::OnboardingQueue => &[("modules/servicebus-access.bicep", Some("onboardingQueue"))],
        ScopeKind::EventsTopic => &[("modules/servicebus-access.bicep", Some("eventsTopic"))],
        ScopeKind::AllowedStorageScopes => {
            &[("modules/storage-access.bicep", None), ("modules/storage-access-resource-group.bicep", None)]
        }
        ScopeKind::AllowedSubscriptions => &[("modules/storage-access.bicep", None)],
        ScopeKind::CmkIdentity => &[("modules/function-app.bicep", Some("cmkIdentity"))],
        ScopeKind::HostStorage => &[("modules/function-app.bicep", Some("hostStorage"))],
        ScopeKind::ApplicationInsights => &[("modules/function-app.bicep", Some("appInsights"))],
        ScopeKind::MultiTenantApp => &[],
    }
}

/// The module parameter through which main.bicep passes the custom role named `role_name`, after checking that the
/// role definition holds exactly `actions`.
fn custom_role_parameter(files: &BTreeMap<String, String>, role_name: &str, actions: &[&str]) -> String {
    let main = &files["main.bicep"];
    let definitions = resource_blocks("main.bicep", main, "Microsoft.Authorization/roleDefinitions");
    let definition = definitions
        .iter()
        .find(|d| property(&d.body, "roleName").is_some_and(|n| n.trim_matches('\'').starts_with(role_name)))
        .unwrap_or_else(|| panic!("main.bicep defines no custom role {role_name:?}"));
    let declared = role_definition_actions(definition);
    let expected: BTreeSet<String> = actions.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(declared, expected, "actions of custom role {role_name}");
    let reference = format!("{}.name", definition.symbol);
    main.lines()
        .find_map(|line| {
            let (key, value) = line.trim().split_once(':')?;
            value.contains(&reference).then(|| key.trim().to_string())
        })
        .unwrap_or_else(|| panic!("main.bicep never passes {reference} to a module"))
}

/// The `actions` of a `Microsoft.Authorization/roleDefinitions` block.
fn role_definition_actions(definition: &ResourceBlock) -> BTreeSet<String> {
    let code = code_only(&definition.body);
    let start = code.find("actions: [").expect("actions array");
    let open = start + code[start..].find('[').expect("bracket");
    definition.body[open + 1..matching_close(&code, open) - 1]
        .lines()
        .map(|l| l.trim().trim_matches('\'').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_permission_is_granted_by_the_bicep_and_nothing_more() {
    let files = &all_bicep();
    let assignments: Vec<ResourceBlock> = files
        .iter()
        .flat_map(|(file, source)| resource_blocks(file, source, "Microsoft.Authorization/roleAssignments"))
        .collect();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();

    for permission in PERMISSIONS.iter().filter(|p| p.scope != ScopeKind::MultiTenantApp) {
        let role_reference: Box<dyn Fn(&ResourceBlock) -> bool> = match permission.grant {
            Grant::BuiltInRole { id, .. } => Box::new(move |block: &ResourceBlock| {
                let vars = string_vars(&files[&block.file]);
                let role = property(&block.body, "roleDefinitionId").unwrap_or_default();
                vars.iter().any(|(name, value)| value == id && role.contains(name.as_str())) || role.contains(id)
            }),
            Grant::CustomRole { name, actions } => {
                let parameter = custom_role_parameter(files, name, actions);
                Box::new(move |block: &ResourceBlock| {
                    property(&block.body, "roleDefinitionId").is_some_and(|r| r.contains(parameter.as_str()))
                })
            }
            Grant::GraphAppRole { .. } | Grant::GraphOwner => panic!("Graph grants belong to MultiTenantApp"),
        };
        for (file, scope_symbol) in expected_locations(permission.scope) {
            let matching = assignments.iter().find(|block| {
                block.file == *file && property(&block.body, "scope") == *scope_symbol && role_reference(block)
            });
            let block = matching.unwrap_or_else(|| {
                panic!("no role assignment in infra/{file} (scope {scope_symbol:?}) grants {:?}", permission.grant)
            });
            let principal = property(&block.body, "principalId").unwrap_or_default();
            assert!(
                principal == "principalId" || principal == "functionApp.identity.principalId",
                "{}: granted to {principal}, not the function app's system identity",
                block.symbol
            );
            assert_eq!(property(&block.body, "principalType"), Some("'ServicePrincipal'"), "{}", block.symbol);
            if permission.condition == Condition::RegisterPreviewFeature {
                assert_eq!(
                    block.condition.as_deref(),
                    Some("registerPreviewFeature"),
                    "{} is conditional",
                    block.symbol
                );
            }
            used.insert((block.file.clone(), block.symbol.clone()));
        }
    }
    let extra: Vec<_> =
        assignments.iter().filter(|b| !used.contains(&(b.file.clone(), b.symbol.clone()))).map(|b| &b.symbol).collect();
    assert!(extra.is_empty(), "role assignments with no entry in PERMISSIONS (least privilege): {extra:?}");
}

#[test]
fn graph_grants_are_made_by_the_isv_setup_script() {
    let script = read_infra(ISV_SETUP_SCRIPT);
    for permission in PERMISSIONS.iter().filter(|p| p.scope == ScopeKind::MultiTenantApp) {
        match permission.grant {
            Grant::GraphAppRole { value } => {
                assert!(script.contains(&format!("'{value}'")), "isv-app-setup.sh does not grant {value}")
            }
            Grant::GraphOwner => assert!(script.contains("/owners/\\$ref"), "isv-app-setup.sh does not add the owner"),
            other => panic!("unexpected grant on the app: {other:?}"),
        }
    }
}

#[test]
fn scanner_ignores_braces_in_strings_and_comments() {
    let source =
        "// don't { count\nresource a 'T@1' = if (x) {\n  name: '}{'\n  inner: { b: 1 }\n}\nresource c 'U@1' = {}\n";
    let blocks = resource_blocks("f", source, "T");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].symbol, "a");
    assert_eq!(blocks[0].condition.as_deref(), Some("x"));
    assert!(blocks[0].body.ends_with("{ b: 1 }\n}"));
}

/// The trigger and the queue agree on sessions (ARCHITECTURE.md, decision 13): the queue requires them, the trigger
/// enables them, and the host keeps a session lock at least as long as one invocation may run.
#[test]
fn the_onboarding_queue_requires_sessions_and_the_trigger_uses_them() {
    let bicep = read_infra("modules/servicebus.bicep");
    let queues = resource_blocks("modules/servicebus.bicep", &bicep, "Microsoft.ServiceBus/namespaces/queues");
    assert_eq!(queues.len(), 1);
    assert_eq!(property(&queues[0].body, "requiresSession"), Some("true"), "{}", queues[0].body);

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let json = |path: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(repo.join(path)).unwrap()).unwrap()
    };
    let function = json("function-definitions/ProcessOnboarding/function.json");
    assert_eq!(function["bindings"][0]["isSessionsEnabled"], true, "{function:#}");

    let host = json("host.json");
    let seconds = |text: &serde_json::Value| -> u64 {
        let parts: Vec<u64> = text.as_str().unwrap().split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600 + parts[1] * 60 + parts[2]
    };
    let service_bus = &host["extensions"]["serviceBus"];
    let renewal = seconds(&service_bus["maxAutoLockRenewalDuration"]);
    assert!(renewal >= seconds(&host["functionTimeout"]), "the session lock outlives an invocation: {service_bus}");
    assert!(service_bus["maxConcurrentSessions"].as_u64().is_some_and(|n| n >= 1), "{service_bus}");
    assert!(service_bus.get("sessionIdleTimeout").is_some(), "an idle session must not hold its slot a minute");
    assert!(service_bus.get("maxConcurrentCalls").is_none(), "ignored with sessions; it would only mislead");
}

/// Each function folder is one the handler serves, and no HTTP function is open to anonymous callers (the checkov
/// skips of CKV_AZURE_16/17/213 rest on it): `DiagnoseOnboarding` needs the master key, `OnboardingStatus` a
/// function key.
#[test]
fn every_function_is_served_and_no_http_function_is_anonymous() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../function-definitions");
    let mut folders: Vec<String> =
        fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    folders.sort();
    let mut served: Vec<String> = cmk_handler::function::server::FUNCTIONS.iter().map(|f| (*f).to_owned()).collect();
    served.sort();
    assert_eq!(folders, served);
    let mut levels = BTreeMap::new();
    for folder in &folders {
        let function: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(root.join(folder).join("function.json")).unwrap()).unwrap();
        for binding in function["bindings"].as_array().unwrap() {
            if binding["type"] == "httpTrigger" {
                // The host's default is `function`.
                levels.insert(folder.clone(), binding["authLevel"].as_str().unwrap_or("function").to_owned());
            }
        }
    }
    assert_eq!(
        levels,
        BTreeMap::from([
            ("DiagnoseOnboarding".to_owned(), "admin".to_owned()),
            ("OnboardingStatus".to_owned(), "function".to_owned()),
        ])
    );
}

/// A role as a Bicep role assignment or a scenario role assignment names it: a built-in role by its GUID, a custom
/// role by its actions (its name and GUID are per deployment).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    BuiltIn(String),
    Custom(BTreeSet<String>),
}

/// The role a Bicep role assignment grants: a `var` holding a built-in GUID, or a module parameter through which
/// main.bicep passes one of its custom role definitions.
fn bicep_role(files: &BTreeMap<String, String>, block: &ResourceBlock) -> Role {
    let reference = property(&block.body, "roleDefinitionId").expect("roleDefinitionId");
    let vars = string_vars(&files[&block.file]);
    if let Some(guid) = vars.iter().find_map(|(name, value)| reference.contains(name.as_str()).then_some(value)) {
        return Role::BuiltIn(guid.to_ascii_lowercase());
    }
    let main = &files["main.bicep"];
    let definitions = resource_blocks("main.bicep", main, "Microsoft.Authorization/roleDefinitions");
    let definition = definitions
        .iter()
        .find(|definition| {
            let passed_as = format!("{}.name", definition.symbol);
            main.lines().any(|line| {
                line.trim()
                    .split_once(':')
                    .is_some_and(|(param, value)| value.contains(&passed_as) && reference.contains(param.trim()))
            })
        })
        .unwrap_or_else(|| panic!("{}: role {reference} is neither a built-in var nor a custom role", block.symbol));
    Role::Custom(role_definition_actions(definition))
}

/// The scenario scopes a Bicep role assignment becomes, for the sample's settings. A new kind of scope in the Bicep
/// fails here until this function learns where it lives in the scenario.
fn scenario_scopes(block: &ResourceBlock, sample: &Sample) -> Vec<String> {
    let scope = property(&block.body, "scope");
    match (block.file.as_str(), scope) {
        ("modules/servicebus-access.bicep", Some("onboardingQueue")) => {
            vec![format!("{}/queues/{}", sample.namespace_id, sample.setting("CMK_ONBOARDING_QUEUE"))]
        }
        ("modules/servicebus-access.bicep", Some("eventsTopic")) => {
            vec![format!("{}/topics/{}", sample.namespace_id, sample.setting("CMK_EVENTS_TOPIC"))]
        }
        ("modules/function-app.bicep", Some("cmkIdentity")) => vec![sample.setting("CMK_UAMI_RESOURCE_ID")],
        ("modules/function-app.bicep", Some(symbol @ ("hostStorage" | "appInsights"))) => {
            // Their names come from uniqueString(): the scenario's resource of that type in the app's resource group.
            let resource_type = declared_type(&read_infra(&block.file), symbol);
            let found: Vec<String> = sample
                .granted_scopes()
                .into_iter()
                .filter(|scope| in_group_of_type(scope, &sample.app_group, &resource_type))
                .collect();
            assert_eq!(found.len(), 1, "one {resource_type} in {} gets {}: {found:?}", sample.app_group, block.symbol);
            found
        }
        ("modules/storage-access.bicep", None) if block.symbol == "storageOnSubscription" => sample
            .allowed_scopes()
            .into_iter()
            .filter(|s| !s.to_ascii_lowercase().contains("/resourcegroups/"))
            .collect(),
        ("modules/storage-access.bicep", None) if block.symbol == "featureRegistrar" => {
            let subscriptions: BTreeSet<String> =
                sample.allowed_scopes().iter().map(|s| s.split('/').take(3).collect::<Vec<_>>().join("/")).collect();
            subscriptions.into_iter().collect()
        }
        ("modules/storage-access-resource-group.bicep", None) => sample
            .allowed_scopes()
            .into_iter()
            .filter(|s| s.to_ascii_lowercase().contains("/resourcegroups/"))
            .collect(),
        (file, scope) => {
            panic!("{file}: no rule maps role assignment {} (scope {scope:?}) to the scenario", block.symbol)
        }
    }
}

/// `resource <symbol> '<type>@<version>'` of a file → `<type>`.
fn declared_type(source: &str, symbol: &str) -> String {
    source
        .lines()
        .find_map(|line| {
            let mut words = line.trim().strip_prefix("resource ")?.split_whitespace();
            (words.next()? == symbol)
                .then(|| words.next().map(|t| t.trim_matches('\'').split('@').next().unwrap_or("").to_owned()))?
        })
        .unwrap_or_else(|| panic!("no resource {symbol}"))
}

/// Whether ARM id `scope` is a resource of `resource_type` (`Namespace/type`) directly in resource group `group`.
fn in_group_of_type(scope: &str, group: &str, resource_type: &str) -> bool {
    let lower = scope.to_ascii_lowercase();
    let prefix = format!("{}/providers/{}/", group.to_ascii_lowercase(), resource_type.to_ascii_lowercase());
    lower.strip_prefix(&prefix).is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// The sample scenario and the settings it runs with (`samples/demo.settings.json`, as the testbed and the demo do).
struct Sample {
    scenario: azure_emulator::Scenario,
    settings: serde_json::Value,
    /// The function app's system-assigned identity.
    principal: String,
    /// The Service Bus namespace's ARM id.
    namespace_id: String,
    /// The resource group `infra/` deploys the app, its identity and Service Bus into: the CMK identity's.
    app_group: String,
}

impl Sample {
    fn load() -> Self {
        let read = |path: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let scenario: azure_emulator::Scenario = serde_json::from_str(&read("samples/scenario.json")).unwrap();
        let settings: serde_json::Value = serde_json::from_str(&read("samples/demo.settings.json")).unwrap();
        let principal = scenario.function_app.as_ref().expect("functionApp").system_assigned.principal_id.clone();
        let fqdn = settings["Values"]["ServiceBusConnection__fullyQualifiedNamespace"].as_str().unwrap();
        let name = fqdn.split('.').next().unwrap();
        let namespace = scenario.service_bus.iter().find(|ns| ns.name.eq_ignore_ascii_case(name)).expect("namespace");
        let namespace_id = namespace.resource_id.clone();
        let uami = settings["Values"]["CMK_UAMI_RESOURCE_ID"].as_str().unwrap();
        let app_group = uami.split("/providers/").next().unwrap().to_owned();
        assert!(
            namespace_id.to_ascii_lowercase().starts_with(&format!("{}/", app_group.to_ascii_lowercase())),
            "infra/ deploys Service Bus and the CMK identity into one resource group"
        );
        Sample { scenario, settings, principal, namespace_id, app_group }
    }

    fn setting(&self, name: &str) -> String {
        self.settings["Values"][name].as_str().unwrap_or_else(|| panic!("demo.settings.json sets no {name}")).to_owned()
    }

    fn allowed_scopes(&self) -> Vec<String> {
        self.setting("CMK_ALLOWED_SCOPES").split(',').map(|s| s.trim().to_owned()).collect()
    }

    fn register_preview_feature(&self) -> bool {
        self.settings["Values"]["CMK_REGISTER_PREVIEW_FEATURE"].as_str() == Some("true")
    }

    /// The scopes of the scenario's assignments to the function app.
    fn granted_scopes(&self) -> Vec<String> {
        self.scenario
            .role_assignments
            .iter()
            .filter(|a| a.principal_id == self.principal)
            .map(|a| a.scope.clone())
            .collect()
    }

    /// Every ISV-side assignment (in a subscription of the ISV tenant, or to an ISV identity) as (role, lower-cased
    /// scope); they must all go to the function app's system identity, as in `infra/`.
    fn isv_grants(&self) -> BTreeSet<(Role, String)> {
        let rbac = azure_emulator::rbac::Rbac::new(&self.scenario.role_definitions, std::time::Duration::ZERO)
            .expect("the scenario's custom roles load");
        let isv_tenant = &self.scenario.function_app.as_ref().expect("functionApp").tenant_id;
        let isv_subscriptions: BTreeSet<String> = self
            .scenario
            .subscriptions
            .iter()
            .filter(|s| s.tenant_id.eq_ignore_ascii_case(isv_tenant))
            .map(|s| format!("/subscriptions/{}", s.id.to_ascii_lowercase()))
            .collect();
        let isv_identities: BTreeSet<&str> =
            self.scenario.managed_identities.iter().map(|mi| mi.principal_id.as_str()).collect();
        let mut grants = BTreeSet::new();
        for assignment in &self.scenario.role_assignments {
            let subscription = assignment.scope.to_ascii_lowercase().split('/').take(3).collect::<Vec<_>>().join("/");
            let isv_side = isv_subscriptions.contains(&subscription)
                || isv_identities.contains(assignment.principal_id.as_str())
                || assignment.principal_id == self.principal;
            if !isv_side {
                continue;
            }
            assert_eq!(
                assignment.principal_id, self.principal,
                "infra/ grants only the function app's system identity (the CMK identity holds no role)"
            );
            let role = rbac.role(&assignment.role).unwrap_or_else(|| panic!("unknown role {}", assignment.role));
            let role = if role.role_type == "CustomRole" {
                let allowed: BTreeSet<String> = self.allowed_scopes().into_iter().collect();
                let assignable: BTreeSet<String> = role.assignable_scopes.iter().cloned().collect();
                assert_eq!(
                    assignable, allowed,
                    "the custom role is assignable where main.bicep says (allowedScopeIds)"
                );
                Role::Custom(role.actions.iter().cloned().collect())
            } else {
                Role::BuiltIn(role.id.clone())
            };
            grants.insert((role, assignment.scope.to_ascii_lowercase()));
        }
        grants
    }
}

#[test]
fn the_sample_scenario_grants_exactly_what_the_bicep_grants() {
    let files = &all_bicep();
    let sample = Sample::load();
    let mut expected = BTreeSet::new();
    for (file, source) in files {
        for block in resource_blocks(file, source, "Microsoft.Authorization/roleAssignments") {
            if block.condition.as_deref() == Some("registerPreviewFeature") && !sample.register_preview_feature() {
                continue;
            }
            let role = bicep_role(files, &block);
            for scope in scenario_scopes(&block, &sample) {
                expected.insert((role.clone(), scope.to_ascii_lowercase()));
            }
        }
    }
    let granted = sample.isv_grants();
    let missing: Vec<_> = expected.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&expected).collect();
    assert!(missing.is_empty(), "infra/ grants these, samples/scenario.json does not: {missing:#?}");
    assert!(extra.is_empty(), "samples/scenario.json grants these, infra/ does not: {extra:#?}");
}
