//! The emulated Functions host, end to end through the real `test-handler` binary: configuration errors, the
//! handler's process environment, restart policy, Service Bus dispatch (payloads byte for byte, settlement, outputs,
//! timeouts) and HTTP triggers with function keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use azure_emulator::host::{HostHandle, HostOptions};
use azure_emulator::scenario::{Change, RoleAssignment};
use azure_emulator::servicebus::NewMessage;
use azure_emulator::{Emulator, EmulatorOptions, Scenario, StartError};
use serde_json::{Value, json};

const NS: &str = "contoso-sb";
const QUEUE: &str = "onboarding";
const TOPIC: &str = "onboarding-events";
const BODY: &str =
    r#"{"onboardingId":"obd-7f3c","tenantId":"contoso","subscriptionId":"00000000-0000-0000-0000-000000000000"}"#;
const WAIT: Duration = Duration::from_secs(30);
/// A session-enabled queue.
const SESSIONS: &str = "sessions";

/// A throw-away function app folder.
struct App {
    root: PathBuf,
}

impl App {
    fn new(host_json: Value) -> App {
        let root = std::env::temp_dir().join(format!("host-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("records")).unwrap();
        std::fs::write(root.join("host.json"), serde_json::to_vec_pretty(&host_json).unwrap()).unwrap();
        App { root }
    }

    fn function(self, name: &str, function_json: Value) -> App {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
        std::fs::write(self.root.join(name).join("function.json"), serde_json::to_vec_pretty(&function_json).unwrap())
            .unwrap();
        self
    }

    fn records(&self) -> PathBuf {
        self.root.join("records")
    }

    /// Recorded request bodies of `function`, oldest first.
    fn bodies(&self, function: &str) -> Vec<String> {
        self.recorded(function, "json")
    }

    fn headers(&self, function: &str) -> Vec<String> {
        self.recorded(function, "headers")
    }

    fn recorded(&self, function: &str, extension: &str) -> Vec<String> {
        let suffix = format!("-{function}.{extension}");
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.records())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn handler_path() -> &'static str {
    env!("CARGO_BIN_EXE_test-handler")
}

fn host_json(extra: Value) -> Value {
    let mut host = json!({
        "version": "2.0",
        "customHandler": {
            "description": {
                "defaultExecutablePath": handler_path(),
                "arguments": ["--flag", "%TEST_APP_SETTING%", "%UNSET_SETTING_FOR_HOST_TESTS%"]
            }
        },
        "functionTimeout": "00:00:30",
        "extensions": { "serviceBus": { "maxConcurrentCalls": 1 } }
    });
    if let (Some(host), Value::Object(extra)) = (host.as_object_mut(), extra) {
        host.extend(extra);
    }
    host
}

fn sb_trigger(binary: bool) -> Value {
    let mut trigger = json!({
        "name": "onboardingMessage", "type": "serviceBusTrigger", "direction": "in",
        "queueName": "%QUEUE_NAME%", "connection": "ServiceBusConnection"
    });
    if binary {
        trigger["dataType"] = json!("binary");
    }
    trigger
}

/// The function app's system-assigned identity, which the identity-based connection uses.
const APP_PRINCIPAL: &str = "f0000000-0000-0000-0000-0000000000a1";
const NS_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/contoso-sb";

/// The host's identity may receive from and send to every entity of the namespace.
fn scenario() -> Scenario {
    let mut scenario = scenario_without_grants();
    for role in ["Azure Service Bus Data Receiver", "Azure Service Bus Data Sender"] {
        scenario.role_assignments.push(RoleAssignment {
            principal_id: APP_PRINCIPAL.into(),
            role: role.into(),
            scope: NS_ID.into(),
            description: None,
        });
    }
    scenario
}

fn scenario_without_grants() -> Scenario {
    serde_json::from_value(json!({
        "tenants": [{ "id": "11111111-1111-1111-1111-111111111111" }],
        "functionApp": {
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "systemAssigned": { "principalId": APP_PRINCIPAL, "clientId": "f0000000-0000-0000-0000-0000000000c1" }
        },
        "serviceBus": [{
            "name": NS,
            "resourceId": NS_ID,
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "queues": [
                { "name": QUEUE, "lockDuration": "PT5S", "maxDeliveryCount": 3 },
                { "name": "slow", "lockDuration": "PT1S", "maxDeliveryCount": 3 },
                { "name": SESSIONS, "lockDuration": "PT1S", "maxDeliveryCount": 3, "requiresSession": true }
            ],
            "topics": [{ "name": TOPIC, "subscriptions": [{ "name": "all" }] }]
        }]
    }))
    .unwrap()
}

fn options(app: &App, mode: &[(&str, &str)]) -> HostOptions {
    let mut settings: BTreeMap<String, String> = [
        ("ServiceBusConnection__fullyQualifiedNamespace", "contoso-sb.servicebus.windows.net"),
        ("QUEUE_NAME", QUEUE),
        ("TEST_APP_SETTING", "from-app-settings"),
        ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    settings.insert("TEST_HANDLER_RECORD_DIR".into(), app.records().display().to_string());
    for (k, v) in mode {
        settings.insert(k.to_string(), v.to_string());
    }
    let mut options = HostOptions::new(&app.root, settings);
    options.init_timeout = Duration::from_secs(20);
    options.master_key = Some("master-key-for-tests".into());
    options.function_key = Some("function-key-for-tests".into());
    options
}

async fn start(app: &App, options: HostOptions) -> Emulator {
    start_in(app, options, scenario()).await
}

async fn start_in(app: &App, options: HostOptions, scenario: Scenario) -> Emulator {
    let _ = app;
    Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Some(scenario),
        host: Some(options),
    })
    .await
    .expect("emulator with host starts")
}

fn host(emulator: &Emulator) -> &HostHandle {
    emulator.host().expect("host is running")
}

/// Polls `check` until it yields a value; fails the test after `WAIT`.
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn send(emulator: &Emulator, body: &str) {
    let message = NewMessage {
        body: body.as_bytes().to_vec(),
        content_type: Some("application/json".into()),
        message_id: Some("c2f1e0a4d6b94a3f8e2b1c0d9e8f7a6b".into()),
        correlation_id: Some("req-1234".into()),
        application_properties: [("source".to_owned(), json!("portal"))].into(),
        ..NewMessage::default()
    };
    emulator.shared().bus.send(NS, QUEUE, message).expect("send to the trigger queue");
}

fn queue_is_empty(emulator: &Emulator) -> bool {
    emulator.shared().bus.peek(NS, QUEUE, 0, 10).unwrap().is_empty()
}

/// Compact JSON with the member order of the text (no whitespace outside strings).
fn minify(text: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Replaces the string value of each volatile member (ids, times, sequence numbers) with `"<normalised>"`.
fn normalise(compact: &str) -> String {
    let mut text = compact.to_owned();
    for key in [
        "LockToken",
        "ExpiresAtUtc",
        "ExpiresAt",
        "EnqueuedTimeUtc",
        "EnqueuedTime",
        "SequenceNumber",
        "Identifier",
        "UtcNow",
        "RandGuid",
    ] {
        let needle = format!("\"{key}\":\"");
        let mut from = 0;
        while let Some(at) = text[from..].find(&needle).map(|i| i + from) {
            let start = at + needle.len();
            let mut end = start;
            let bytes = text.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            text.replace_range(start..end, "<normalised>");
            from = start;
        }
    }
    text
}

/// A host payload fixture from the repository's specs (`specs/functions/`, provenance in `specs/provenance.json`).
fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/functions").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn start_error(app: &App) -> String {
    let result = Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Some(scenario()),
        host: Some(options(app, &[])),
    })
    .await;
    match result {
        Err(StartError::Host(error)) => error.to_string(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the host started although the configuration is invalid"),
    }
}

#[tokio::test]
async fn configuration_errors_name_the_file() {
    let app = App::new(host_json(json!({}))).function("1bad", json!({ "bindings": [sb_trigger(false)] }));
    let error = start_error(&app).await;
    assert!(error.contains("1bad") && error.contains("function name"), "{error}");

    let mut bad_binding = sb_trigger(false);
    bad_binding["name"] = json!("onboarding_message");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [bad_binding] }));
    let error = start_error(&app).await;
    assert!(error.contains("function.json") && error.contains("onboarding_message"), "{error}");

    let app =
        App::new(json!({ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "" } } }));
    let error = start_error(&app).await;
    assert!(error.contains("host.json") && error.contains("DefaultExecutablePath"), "{error}");

    let app = App::new(host_json(json!({ "functionTimeout": 30 })));
    let error = start_error(&app).await;
    assert!(error.contains("host.json") && error.contains("schema"), "{error}");

    let mut unresolved = sb_trigger(false);
    unresolved["queueName"] = json!("%NOT_AN_APP_SETTING_ANYWHERE%");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [unresolved] }));
    let error = start_error(&app).await;
    assert!(error.contains("function.json") && error.contains("NOT_AN_APP_SETTING_ANYWHERE"), "{error}");

    // The emulator's own environment is not an app setting: PATH is set here, but no app has it.
    let mut from_environment = sb_trigger(false);
    from_environment["queueName"] = json!("%PATH%");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [from_environment] }));
    let error = start_error(&app).await;
    assert!(error.contains("function.json") && error.contains("'%PATH%' does not resolve"), "{error}");
}

/// Mistakes the schema's binding alternatives, read as `anyOf`, let through: each binding is checked against its
/// own type, and the host's own property types apply.
#[tokio::test]
async fn each_binding_is_validated_by_its_own_type() {
    let mut misspelt = sb_trigger(false);
    misspelt["type"] = json!("serviceBusTriger");
    let app = App::new(host_json(
        json!({ "extensionBundle": { "id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)" } }),
    ))
    .function("Fn", json!({ "bindings": [misspelt] }));
    let error = start_error(&app).await;
    assert!(
        error.contains("The binding type(s) 'serviceBusTriger' were not found in the configured extension bundle"),
        "{error}"
    );

    let mut level = http_function("superuser");
    level["bindings"][0]["type"] = json!("HttpTrigger");
    let app = App::new(host_json(json!({}))).function("Fn", level);
    let error = start_error(&app).await;
    assert!(error.contains("function.json") && error.contains("superuser"), "{error}");

    let mut auto_complete = sb_trigger(false);
    auto_complete["autoCompleteMessages"] = json!("yes");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [auto_complete] }));
    let error = start_error(&app).await;
    assert!(error.contains("autoCompleteMessages") && error.contains("true or false"), "{error}");

    let mut sessions = sb_trigger(false);
    sessions["isSessionsEnabled"] = json!("false");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [sessions] }));
    let error = start_error(&app).await;
    assert!(error.contains("isSessionsEnabled"), "{error}");

    let mut data_type = sb_trigger(false);
    data_type["dataType"] = json!("bytes");
    let app = App::new(host_json(json!({}))).function("Fn", json!({ "bindings": [data_type] }));
    let error = start_error(&app).await;
    assert!(error.contains("bytes"), "{error}");
}

/// `Outputs` must deserialise into a dictionary: an array or a string fails the invocation, so the message is
/// abandoned and redelivered until the queue dead-letters it (MaxDeliveryCount 3).
#[tokio::test]
async fn wrong_typed_outputs_fail_the_invocation() {
    for answer in [r#"{"Outputs":[{"completionEvent":{"n":1}}]}"#, r#"{"Outputs":"completionEvent"}"#] {
        let app = App::new(host_json(json!({}))).function(
            "ProcessOnboarding",
            json!({ "bindings": [
                sb_trigger(true),
                { "name": "completionEvent", "type": "serviceBus", "direction": "out", "topicName": TOPIC, "connection": "ServiceBusConnection" }
            ]}),
        );
        let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", &format!("respond:{answer}"))])).await;
        send(&emulator, BODY);
        let dead = wait_for("the dead-lettered message", || {
            let dead = emulator.shared().bus.peek(NS, &format!("{QUEUE}/$DeadLetterQueue"), 0, 10).unwrap();
            (!dead.is_empty()).then_some(dead)
        })
        .await;
        assert_eq!(dead[0].dead_letter_reason.as_deref(), Some("MaxDeliveryCountExceeded"), "{answer}");
        let status = host(&emulator).status();
        assert_eq!(
            (status["invocations"]["failed"].clone(), status["invocations"]["ok"].clone()),
            (json!(3), json!(0))
        );
        assert!(status["lastError"].as_str().unwrap().contains("IDictionary"), "{status}");
        assert!(emulator.shared().bus.peek(NS, &format!("{TOPIC}/subscriptions/all"), 0, 10).unwrap().is_empty());
        emulator.shutdown().await;
    }
}

/// Without a `$return` binding, a `ReturnValue` object's members are outputs and win over `Outputs`
/// (`HandleOutputDictionary`); a missing `ReturnValue` is only logged by the host.
#[tokio::test]
async fn a_return_value_object_binds_outputs_by_name() {
    let app = App::new(host_json(json!({}))).function(
        "ProcessOnboarding",
        json!({ "bindings": [
            sb_trigger(true),
            { "name": "completionEvent", "type": "serviceBus", "direction": "out", "topicName": TOPIC, "connection": "ServiceBusConnection" }
        ]}),
    );
    let answer = r#"{"Outputs":{"completionEvent":{"from":"Outputs"}},"ReturnValue":{"completionEvent":{"from":"ReturnValue"}}}"#;
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", &format!("respond:{answer}"))])).await;
    send(&emulator, BODY);
    let event =
        emulator.shared().bus.receive(NS, &format!("{TOPIC}/subscriptions/all"), WAIT).await.unwrap().expect("output");
    assert_eq!(String::from_utf8(event.message.body).unwrap(), "{\n  \"from\": \"ReturnValue\"\n}");
    emulator.shutdown().await;
}

/// An `http` output is deserialised into `{statusCode, status, headers, body}` before anything is bound: a bare
/// value fails the invocation (500). A `$return` output left without `ReturnValue` is no response: 200, no body.
#[tokio::test]
async fn http_outputs_must_be_response_objects() {
    let app = App::new(host_json(json!({})))
        .function(
            "bare",
            json!({ "bindings": [
                { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous" },
                { "type": "http", "direction": "out", "name": "res" }
            ]}),
        )
        .function(
            "returns",
            json!({ "bindings": [
                { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous" },
                { "type": "http", "direction": "out", "name": "$return" }
            ]}),
        )
        .function(
            "text",
            json!({ "bindings": [
                { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous" },
                { "type": "http", "direction": "out", "name": "res" }
            ]}),
        );
    let modes = [
        ("TEST_HANDLER_MODE_bare", r#"respond:{"Outputs":{"res":"hello"}}"#),
        ("TEST_HANDLER_MODE_returns", r#"respond:{"Outputs":{},"ReturnValue":null}"#),
        ("TEST_HANDLER_MODE_text", r#"respond:{"Outputs":{"res":"{\"statusCode\":202,\"body\":\"queued\"}"}}"#),
    ];
    let emulator = start(&app, options(&app, &modes)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |function: &str| client.post(format!("{}/api/{function}", emulator.url())).send();
    assert_eq!(call("bare").await.unwrap().status(), 500);
    let answer = call("returns").await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "");
    let answer = call("text").await.unwrap();
    assert_eq!(answer.status(), 202, "a string holding a response object deserialises");
    assert_eq!(answer.text().await.unwrap(), "queued");
    let status = host(&emulator).status();
    assert_eq!((status["invocations"]["failed"].clone(), status["invocations"]["ok"].clone()), (json!(1), json!(2)));
    assert!(status["lastError"].as_str().unwrap().contains("httpOutputBindingResponse"), "{status}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_handler_gets_the_hosts_environment_and_its_output_is_kept() {
    let mut trigger = sb_trigger(false);
    trigger["autoCompleteMessages"] = json!(false);
    let app = App::new(host_json(json!({})))
        .function("Quiet", json!({ "bindings": [trigger], "retry": { "strategy": "fixedDelay", "maxRetryCount": 2, "delayInterval": "00:00:01" } }));
    let emulator = start(&app, options(&app, &[])).await;
    let host = host(&emulator);
    let status = host.status();
    assert_eq!(status["state"], "ready");
    let port = status["port"].as_u64().unwrap();
    let output = wait_for("the handler's start-up lines", || {
        let output = host.handler_output();
        output.iter().any(|l| l.contains("stderr is captured")).then_some(output)
    })
    .await;
    let line =
        |name: &str| output.iter().find(|l| l.starts_with(&format!("test-handler env {name}="))).cloned().unwrap();
    assert_eq!(line("FUNCTIONS_CUSTOMHANDLER_PORT"), format!("test-handler env FUNCTIONS_CUSTOMHANDLER_PORT={port}"));
    assert_eq!(line("FUNCTIONS_HTTPWORKER_PORT"), format!("test-handler env FUNCTIONS_HTTPWORKER_PORT={port}"));
    assert!(!line("FUNCTIONS_CUSTOMHANDLER_WORKER_ID").ends_with("<unset>"));
    assert!(!line("FUNCTIONS_HTTPWORKER_ID").ends_with("<unset>"));
    let root = std::path::absolute(&app.root).unwrap().display().to_string();
    assert_eq!(line("FUNCTIONS_APP_ROOT_PATH"), format!("test-handler env FUNCTIONS_APP_ROOT_PATH={root}"));
    assert_eq!(line("IDENTITY_ENDPOINT"), format!("test-handler env IDENTITY_ENDPOINT={}/msi/token", emulator.url()));
    assert_eq!(line("TEST_APP_SETTING"), "test-handler env TEST_APP_SETTING=from-app-settings");
    assert!(output.contains(&format!("test-handler cwd={root}")), "{output:?}");
    assert!(output.contains(&r#"test-handler args=["--flag", "from-app-settings"]"#.to_owned()), "{output:?}");
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("retries will not be supported") && warnings.contains("autoCompleteMessages"),
        "{warnings}"
    );
    emulator.shutdown().await;
}

async fn payload_for(binary: bool) -> (String, String) {
    let app = App::new(host_json(json!({}))).function("ProcessOnboarding", json!({ "bindings": [sb_trigger(binary)] }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "ok")])).await;
    send(&emulator, BODY);
    wait_for("the message to be completed", || (host(&emulator).status()["invocations"]["ok"] == 1).then_some(()))
        .await;
    wait_for("the queue to be empty", || queue_is_empty(&emulator).then_some(())).await;
    let bodies = app.bodies("ProcessOnboarding");
    let headers = app.headers("ProcessOnboarding");
    emulator.shutdown().await;
    assert_eq!(bodies.len(), 1);
    (bodies[0].clone(), headers[0].clone())
}

#[tokio::test]
async fn service_bus_payloads_match_the_derived_examples_byte_for_byte() {
    for (binary, name) in [(false, "default-datatype"), (true, "binary-datatype")] {
        let (body, headers) = payload_for(binary).await;
        let expected = minify(&fixture(&format!("derived/servicebus-trigger.{name}.request.json")));
        assert_eq!(normalise(&body), normalise(&expected), "{name}");
        let lines: Vec<&str> = headers.lines().collect();
        assert_eq!(lines[0], "POST /ProcessOnboarding");
        assert!(lines.contains(&"content-type: application/json; charset=utf-8"), "{headers}");
        assert!(lines.contains(&"x-azure-functions-hostversion: 4.1037.0.0"), "{headers}");
        assert!(lines.contains(&"user-agent: Azure-Functions-Host/4.1037.0.0"), "{headers}");
        let id = lines.iter().find_map(|l| l.strip_prefix("x-azure-functions-invocationid: ")).unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
}

#[tokio::test]
async fn failures_abandon_until_the_message_is_dead_lettered() {
    let app = App::new(host_json(json!({}))).function("ProcessOnboarding", json!({ "bindings": [sb_trigger(true)] }));
    // Not JSON, then 500, then 500: three failed deliveries; the queue's MaxDeliveryCount is 3.
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "text|fail")])).await;
    send(&emulator, BODY);
    let dead = wait_for("the dead-lettered message", || {
        let dead = emulator.shared().bus.peek(NS, &format!("{QUEUE}/$DeadLetterQueue"), 0, 10).unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0].dead_letter_reason.as_deref(), Some("MaxDeliveryCountExceeded"));
    let counts: Vec<Value> = app
        .bodies("ProcessOnboarding")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["Metadata"]["DeliveryCount"].clone())
        .collect();
    assert_eq!(counts, vec![json!("1"), json!("2"), json!("3")]);
    let status = host(&emulator).status();
    assert_eq!(status["invocations"]["failed"], 3);
    assert_eq!(status["invocations"]["ok"], 0);
    assert_eq!(status["restarts"], 0);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_empty_answer_hangs_until_the_timeout_and_restarts_the_handler() {
    let app = App::new(host_json(json!({}))).function("ProcessOnboarding", json!({ "bindings": [sb_trigger(true)] }));
    let mut options = options(&app, &[("TEST_HANDLER_MODE", "empty|ok")]);
    options.function_timeout = Some(Duration::from_millis(700));
    let emulator = start(&app, options).await;
    let first_pid = host(&emulator).status()["pid"].clone();
    let started = Instant::now();
    send(&emulator, BODY);
    wait_for("the redelivery to succeed", || (host(&emulator).status()["invocations"]["ok"] == 1).then_some(())).await;
    assert!(started.elapsed() >= Duration::from_millis(700), "the empty answer did not hang");
    let status = host(&emulator).status();
    assert_eq!(status["invocations"]["timedOut"], 1);
    assert_eq!(status["restarts"], 1);
    assert_ne!(status["pid"], first_pid);
    let counts: Vec<Value> = app
        .bodies("ProcessOnboarding")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["Metadata"]["DeliveryCount"].clone())
        .collect();
    assert_eq!(counts, vec![json!("1"), json!("2")]);
    wait_for("the queue to be empty", || queue_is_empty(&emulator).then_some(())).await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn outputs_are_sent_in_order_before_settlement() {
    let response = minify(&fixture("derived/servicebus-trigger.handler-response.json"));
    let app = App::new(host_json(json!({}))).function(
        "ProcessOnboarding",
        json!({ "bindings": [
            sb_trigger(true),
            { "name": "completionEvent", "type": "serviceBus", "direction": "out", "topicName": TOPIC, "connection": "ServiceBusConnection" }
        ]}),
    );
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", &format!("respond:{response}"))])).await;
    send(&emulator, BODY);
    let event = emulator
        .shared()
        .bus
        .receive(NS, &format!("{TOPIC}/subscriptions/all"), WAIT)
        .await
        .unwrap()
        .expect("the output message");
    wait_for("the trigger message to be completed", || queue_is_empty(&emulator).then_some(())).await;
    let expected: Value = serde_json::from_str(&fixture("derived/servicebus-output.resulting-message.json")).unwrap();
    assert_eq!(String::from_utf8(event.message.body.clone()).unwrap(), expected["Body (UTF-8 text)"].as_str().unwrap());
    assert_eq!(event.message.content_type.as_deref(), Some("text/plain"));
    let headers = app.headers("ProcessOnboarding");
    let invocation = headers[0].lines().find_map(|l| l.strip_prefix("x-azure-functions-invocationid: ")).unwrap();
    assert_eq!(event.message.application_properties.get("$AzureWebJobsParentId"), Some(&json!(invocation)));
    assert!(
        host(&emulator)
            .function_logs()
            .contains(&"Function.ProcessOnboarding.User: Processed onboarding obd-7f3c".to_owned())
    );
    emulator.shutdown().await;

    // A failing second output: the first is already sent, the invocation fails and the trigger is abandoned.
    let app = App::new(host_json(json!({}))).function(
        "ProcessOnboarding",
        json!({ "bindings": [
            sb_trigger(true),
            { "name": "first", "type": "serviceBus", "direction": "out", "topicName": TOPIC, "connection": "ServiceBusConnection" },
            { "name": "second", "type": "serviceBus", "direction": "out", "queueName": "missing", "connection": "ServiceBusConnection" }
        ]}),
    );
    let answer = r#"{"Outputs":{"first":{"n":1},"second":{"n":2}}}"#;
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", &format!("respond:{answer}"))])).await;
    send(&emulator, BODY);
    // The queue's MaxDeliveryCount is 3: each delivery fails the same way, so the message ends dead-lettered.
    wait_for("three failed deliveries", || (host(&emulator).status()["invocations"]["failed"] == 3).then_some(()))
        .await;
    let sent = emulator.shared().bus.receive(NS, &format!("{TOPIC}/subscriptions/all"), WAIT).await.unwrap().unwrap();
    assert_eq!(String::from_utf8(sent.message.body).unwrap(), "{\n  \"n\": 1\n}");
    let bodies = app.bodies("ProcessOnboarding");
    assert_eq!(bodies.len(), 3);
    let redelivered: Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(redelivered["Metadata"]["DeliveryCount"], "2");
    wait_for("the dead-lettered message", || {
        let dead = emulator.shared().bus.peek(NS, &format!("{QUEUE}/$DeadLetterQueue"), 0, 10).unwrap();
        (dead.len() == 1).then_some(())
    })
    .await;
    emulator.shutdown().await;
}

/// Nanoseconds in a recorded file's name: when the handler received that invocation.
fn received_at(app: &App, function: &str) -> Vec<u128> {
    let suffix = format!("-{function}.json");
    let mut times: Vec<u128> = std::fs::read_dir(app.records())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(&suffix))
        .map(|name| name.split('-').next().unwrap().parse().unwrap())
        .collect();
    times.sort();
    times
}

#[tokio::test]
async fn the_lock_is_renewed_while_the_handler_works() {
    let mut trigger = sb_trigger(true);
    trigger["queueName"] = json!("slow");
    let two_slots = host_json(json!({ "extensions": { "serviceBus": { "maxConcurrentCalls": 2 } } }));
    let app = App::new(two_slots).function("ProcessOnboarding", json!({ "bindings": [trigger] }));
    let mut options = options(&app, &[("TEST_HANDLER_MODE", "hang|ok")]);
    // Longer than two lock durations (1 s): without renewal the message would come back while the first invocation
    // still runs, and with two free slots it would be delivered again at once.
    options.function_timeout = Some(Duration::from_millis(2500));
    let emulator = start(&app, options).await;
    let message = NewMessage::new(BODY.as_bytes().to_vec());
    emulator.shared().bus.send(NS, "slow", message).unwrap();
    wait_for("the redelivery after the timeout to succeed", || {
        (host(&emulator).status()["invocations"]["ok"] == 1).then_some(())
    })
    .await;
    let times = received_at(&app, "ProcessOnboarding");
    assert_eq!(times.len(), 2, "one delivery during the hang, one after the timeout");
    assert!(times[1] - times[0] >= 2_400_000_000, "redelivered after {} ms", (times[1] - times[0]) / 1_000_000);
    assert_eq!(host(&emulator).status()["invocations"]["timedOut"], 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn auto_complete_false_never_completes() {
    let mut trigger = sb_trigger(true);
    trigger["queueName"] = json!("slow");
    trigger["autoCompleteMessages"] = json!(false);
    let app = App::new(host_json(json!({}))).function("ProcessOnboarding", json!({ "bindings": [trigger] }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "ok")])).await;
    emulator.shared().bus.send(NS, "slow", NewMessage::new(BODY.as_bytes().to_vec())).unwrap();
    // Every invocation succeeds, yet the lock (1 s) lapses each time and the message comes back.
    wait_for("a redelivery after a successful invocation", || {
        (app.bodies("ProcessOnboarding").len() >= 2).then_some(())
    })
    .await;
    let second: Value = serde_json::from_str(&app.bodies("ProcessOnboarding")[1]).unwrap();
    assert_eq!(second["Metadata"]["DeliveryCount"], "2");
    assert_eq!(host(&emulator).status()["invocations"]["failed"], 0);
    emulator.shutdown().await;
}

fn http_function(auth_level: &str) -> Value {
    json!({ "bindings": [
        { "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["post"], "authLevel": auth_level, "route": "order/{id?}" },
        { "type": "http", "direction": "out", "name": "res" }
    ]})
}

#[tokio::test]
async fn http_triggers_check_function_keys_and_translate_the_answer() {
    let app = App::new(host_json(json!({})))
        .function("order", http_function("function"))
        .function(
            "admin",
            json!({ "bindings": [
                { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "admin" },
                { "type": "http", "direction": "out", "name": "res" }
            ]}),
        )
        .function(
            "open",
            json!({ "bindings": [
                { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous" },
                { "type": "http", "direction": "out", "name": "res" }
            ]}),
        );
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "echo")])).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = emulator.url();
    let order = r#"{"id":1005,"quantity":2,"color":"black"}"#;
    let post = |path: &str| client.post(format!("{url}{path}")).header("content-type", "application/json").body(order);

    assert_eq!(post("/api/order").send().await.unwrap().status(), 401);
    assert_eq!(post("/api/order").header("x-functions-key", "wrong").send().await.unwrap().status(), 401);
    assert_eq!(client.get(format!("{url}/api/order?code=function-key-for-tests")).send().await.unwrap().status(), 404);
    let answer = post("/api/order/7?code=master-key-for-tests").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = post("/api/order?x=1").header("x-functions-key", "function-key-for-tests").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-test-handler"], "echo");
    let echoed: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let req = &echoed["Data"]["req"];
    let docs: Value = serde_json::from_str(&fixture("docs-verbatim/http-order.handler-request.json")).unwrap();
    for key in docs["Data"]["req"].as_object().unwrap().keys() {
        assert!(req.get(key).is_some(), "Data.req.{key} is missing: {req}");
    }
    assert_eq!(req["Method"], "POST");
    assert_eq!(req["Body"], order);
    assert_eq!(req["Query"], r#"{"x":"1"}"#);
    assert_eq!(req["Headers"]["Content-Type"], json!(["application/json"]));
    assert_eq!(req["Url"], format!("{url}/api/order?x=1"));
    // A repeated parameter (names ignore case, as ASP.NET's query collection does) is one entry, values joined.
    let answer =
        post("/api/order?x=1&y=a%2Fb&X=2").header("x-functions-key", "function-key-for-tests").send().await.unwrap();
    let echoed: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(echoed["Data"]["req"]["Query"], r#"{"x":"1,2","y":"a/b"}"#);

    assert_eq!(post("/api/admin?code=function-key-for-tests").send().await.unwrap().status(), 401);
    assert_eq!(post("/api/admin?code=master-key-for-tests").send().await.unwrap().status(), 200);
    assert_eq!(post("/api/open").send().await.unwrap().status(), 200);
    assert_eq!(post("/api/nothing-here").send().await.unwrap().status(), 404);
    let status: Value = client.get(format!("{url}/_emulator/host")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["keys"]["master"], "master-key-for-tests");
    assert_eq!(status["keys"]["function"], "function-key-for-tests");
    assert_eq!(status["invocations"]["ok"], 5);
    emulator.shutdown().await;
}

#[tokio::test]
async fn restart_policy_follows_the_exit_code() {
    let app = App::new(host_json(json!({}))).function("Exit", http_function("anonymous"));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "exit:200|exit:3")])).await;
    let host = host(&emulator);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = || client.post(format!("{}/api/order", emulator.url())).send();
    let pid = |status: &Value| status["pid"].clone();

    // SIGKILL is a crash: restarted, counted as an error.
    let first = pid(&host.status());
    host.kill_handler();
    wait_for("a restart after the kill", || {
        let status = host.status();
        (status["state"] == "ready" && pid(&status) != first).then_some(())
    })
    .await;
    assert_eq!(host.status()["restarts"], 1);

    // Exit 200 is an intentional restart; exit 3 is the second error; the third error shuts the host down.
    for expected_restarts in [2, 3] {
        assert_eq!(call().await.unwrap().status(), 500);
        wait_for("a restart", || {
            let status = host.status();
            (status["state"] == "ready" && status["restarts"] == expected_restarts).then_some(())
        })
        .await;
    }
    assert_eq!(call().await.unwrap().status(), 500);
    wait_for("the host to shut down", || (host.status()["state"] == "shutdown").then_some(())).await;
    let status = host.status();
    assert!(status["shutdownReason"].as_str().unwrap().contains("Exceeded http worker restart retry count"));
    assert_eq!(status["restarts"], 3);
    emulator.shutdown().await;

    // Exit 0 is never restarted.
    let app = App::new(host_json(json!({}))).function("Exit", http_function("anonymous"));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "exit:0")])).await;
    let host = emulator.host().unwrap();
    assert_eq!(call_once(&emulator).await, 500);
    wait_for("the handler to exit", || (host.status()["state"] == "exited").then_some(())).await;
    assert_eq!(host.status()["restarts"], 0);
    assert_eq!(call_once(&emulator).await, 500);
    assert!(host.handler_output().contains(&"test-handler exiting with 0".to_owned()));
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_platform_restarts_a_host_that_shut_down_when_asked_to() {
    let app = App::new(host_json(json!({}))).function("Exit", http_function("anonymous"));
    let mut options = options(&app, &[]);
    options.platform_restarts_host = true;
    let emulator = start(&app, options).await;
    let host = host(&emulator);
    // Three crashes inside 30 minutes shut the host down; the platform starts it again with no error history, so
    // the fourth crash is only a restart again.
    for kill in 1..=4_u64 {
        let before = host.status()["pid"].clone();
        host.kill_handler();
        wait_for("the handler back after a kill", || {
            let status = host.status();
            (status["state"] == "ready" && status["pid"] != before).then_some(())
        })
        .await;
        let status = host.status();
        assert_eq!(status["restarts"], kill, "{status}");
        assert_eq!(status["hostRestarts"], u64::from(kill >= 3), "{status}");
    }
    assert_eq!(call_once(&emulator).await, 200, "invocations work after the platform restart");
    emulator.shutdown().await;
}

async fn call_once(emulator: &Emulator) -> u16 {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.post(format!("{}/api/order", emulator.url())).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_handler_that_never_listens_fails_the_start() {
    let app = App::new(host_json(json!({}))).function("Exit", http_function("anonymous"));
    let mut options = options(&app, &[("TEST_HANDLER_NEVER_LISTEN", "1")]);
    options.init_timeout = Duration::from_millis(300);
    options.hold_timeout = Some(Duration::from_secs(20));
    let result = Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Some(scenario()),
        host: Some(options),
    })
    .await;
    match result {
        Err(StartError::Host(error)) => {
            let error = error.to_string();
            assert!(error.contains("Initializing HttpWorker timed out") && error.contains("Shutting down"), "{error}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the host started although the handler never listens"),
    }
}

fn session_app(service_bus: Value) -> App {
    let mut trigger = sb_trigger(true);
    trigger["queueName"] = json!(SESSIONS);
    trigger["isSessionsEnabled"] = json!(true);
    App::new(host_json(json!({ "extensions": { "serviceBus": service_bus } })))
        .function("ProcessOnboarding", json!({ "bindings": [trigger] }))
}

fn send_in_session(emulator: &Emulator, session: &str, id: &str) {
    let mut message = NewMessage::new(BODY.as_bytes().to_vec());
    message.message_id = Some(id.to_owned());
    message.session_id = Some(session.to_owned());
    emulator.shared().bus.send(NS, SESSIONS, message).expect("send to the session queue");
}

/// One recorded invocation: when it arrived, its message, session and delivery count as the metadata says, and how
/// many invocations the handler was running then.
#[derive(Debug)]
struct Invocation {
    at_ns: u128,
    message_id: String,
    session_id: String,
    delivery_count: String,
    in_flight: usize,
}

fn invocations(app: &App) -> Vec<Invocation> {
    let times = received_at(app, "ProcessOnboarding");
    let bodies = app.bodies("ProcessOnboarding");
    let headers = app.headers("ProcessOnboarding");
    assert_eq!((times.len(), bodies.len()), (headers.len(), headers.len()));
    let text = |metadata: &Value, key: &str| serde_json::from_str::<String>(metadata[key].as_str().unwrap()).unwrap();
    times
        .into_iter()
        .zip(bodies)
        .zip(headers)
        .map(|((at_ns, body), head)| {
            let body: Value = serde_json::from_str(&body).unwrap();
            let metadata = &body["Metadata"];
            // SessionId is double-encoded like every string the host passes (reference §1.4).
            assert!(metadata["SessionId"].as_str().unwrap().starts_with('"'), "{metadata}");
            Invocation {
                at_ns,
                message_id: text(metadata, "MessageId"),
                session_id: text(metadata, "SessionId"),
                delivery_count: metadata["DeliveryCount"].as_str().unwrap().to_owned(),
                in_flight: head.lines().find_map(|l| l.strip_prefix("in-flight: ")).unwrap().parse().unwrap(),
            }
        })
        .collect()
}

#[tokio::test]
async fn sessions_run_one_message_at_a_time_each_up_to_max_concurrent_sessions() {
    let app = session_app(json!({ "maxConcurrentSessions": 2, "sessionIdleTimeout": "00:00:01" }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "sleep:300")])).await;
    for (session, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("a", "a3")] {
        send_in_session(&emulator, session, id);
    }
    wait_for("five invocations to succeed", || (host(&emulator).status()["invocations"]["ok"] == 5).then_some(()))
        .await;
    let seen = invocations(&app);
    emulator.shutdown().await;

    let in_a: Vec<&Invocation> = seen.iter().filter(|i| i.session_id == "a").collect();
    let order: Vec<&str> = in_a.iter().map(|i| i.message_id.as_str()).collect();
    assert_eq!(order, ["a1", "a2", "a3"], "FIFO inside the session");
    for pair in in_a.windows(2) {
        let gap_ms = (pair[1].at_ns - pair[0].at_ns) / 1_000_000;
        assert!(gap_ms >= 300, "the next message of a session waits for the previous invocation ({gap_ms} ms)");
    }
    let most = seen.iter().map(|i| i.in_flight).max().unwrap();
    assert_eq!(most, 2, "two sessions at once, never more: {seen:#?}");
}

#[tokio::test]
async fn the_session_lock_is_renewed_while_the_handler_works() {
    // The lock lasts 1 s and the invocation 2.5 s: without renewal the session would be free again mid-invocation,
    // and the second pump would take it and deliver the message a second time.
    let app = session_app(json!({ "maxConcurrentSessions": 2 }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "sleep:2500")])).await;
    send_in_session(&emulator, "a", "a1");
    wait_for("the invocation to succeed", || (host(&emulator).status()["invocations"]["ok"] == 1).then_some(())).await;
    wait_for("the queue to be empty", || {
        emulator.shared().bus.peek(NS, SESSIONS, 0, 10).unwrap().is_empty().then_some(())
    })
    .await;
    let seen = invocations(&app);
    emulator.shutdown().await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].delivery_count, "1");
}

#[tokio::test]
async fn a_failed_invocation_is_retried_inside_its_session_before_the_next_message() {
    let app = session_app(json!({ "maxConcurrentSessions": 1, "sessionIdleTimeout": "00:00:01" }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "fail|ok")])).await;
    send_in_session(&emulator, "a", "a1");
    send_in_session(&emulator, "a", "a2");
    wait_for("both messages to succeed", || (host(&emulator).status()["invocations"]["ok"] == 2).then_some(())).await;
    let seen = invocations(&app);
    emulator.shutdown().await;
    let order: Vec<(&str, &str)> = seen.iter().map(|i| (i.message_id.as_str(), i.delivery_count.as_str())).collect();
    assert_eq!(order, [("a1", "1"), ("a1", "2"), ("a2", "1")]);
}

#[tokio::test]
async fn a_held_session_keeps_its_pump_until_it_stays_idle_for_session_idle_timeout() {
    let app = session_app(json!({ "maxConcurrentSessions": 1, "sessionIdleTimeout": "00:00:02" }));
    let emulator = start(&app, options(&app, &[("TEST_HANDLER_MODE", "sleep:2000|ok")])).await;
    send_in_session(&emulator, "a", "a1");
    wait_for("a1 to reach the handler", || (!app.bodies("ProcessOnboarding").is_empty()).then_some(())).await;
    // While a1 runs: b1 is older than a2, but the pump holds session a and serves a2 first.
    send_in_session(&emulator, "b", "b1");
    send_in_session(&emulator, "a", "a2");
    wait_for("three invocations to succeed", || (host(&emulator).status()["invocations"]["ok"] == 3).then_some(()))
        .await;
    let seen = invocations(&app);
    emulator.shutdown().await;
    let order: Vec<&str> = seen.iter().map(|i| i.message_id.as_str()).collect();
    assert_eq!(order, ["a1", "a2", "b1"]);
    let idle_ms = (seen[2].at_ns - seen[1].at_ns) / 1_000_000;
    assert!(idle_ms >= 2000, "session b waited for session a to stay idle 2 s, not {idle_ms} ms");
}

#[tokio::test]
async fn a_listener_without_receive_rights_never_dispatches_until_granted() {
    let app = App::new(host_json(json!({}))).function("ProcessOnboarding", json!({ "bindings": [sb_trigger(true)] }));
    let emulator = start_in(&app, options(&app, &[]), scenario_without_grants()).await;
    send(&emulator, BODY);
    let listener = wait_for("the listener to report its error", || {
        let status = host(&emulator).status();
        let listener = status["listeners"].as_array()?.first()?.clone();
        (listener["state"] == "unauthorized").then_some(listener)
    })
    .await;
    assert_eq!(listener["function"], "ProcessOnboarding");
    assert_eq!(listener["entity"], QUEUE);
    assert_eq!(
        listener["error"],
        format!(
            "Unauthorized access. 'Listen' claim(s) are required to perform this operation. Resource: 'sb://{NS}.servicebus.windows.net/{QUEUE}'."
        )
    );
    assert_eq!(emulator.shared().bus.peek(NS, QUEUE, 0, 10).unwrap().len(), 1, "the message waits");
    assert!(app.bodies("ProcessOnboarding").is_empty(), "nothing was dispatched");

    // Data Sender is not enough; Data Receiver on the queue is, once it has propagated (default 10 minutes).
    let grant = |role: &str| Change::GrantRole {
        vault: None,
        assignment: RoleAssignment {
            principal_id: APP_PRINCIPAL.into(),
            role: role.into(),
            scope: format!("{NS_ID}/queues/{QUEUE}"),
            description: None,
        },
    };
    emulator
        .shared()
        .apply(&[grant("Azure Service Bus Data Sender"), grant("Azure Service Bus Data Receiver")])
        .unwrap();
    emulator.shared().clock.advance(Duration::from_secs(599));
    let refusals = || host(&emulator).status()["listeners"][0]["refusals"].as_u64().unwrap_or_default();
    let before = refusals();
    wait_for("two more refused receives inside the window", || (refusals() >= before + 2).then_some(())).await;
    assert!(app.bodies("ProcessOnboarding").is_empty(), "not propagated yet");
    emulator.shared().clock.advance(Duration::from_secs(1));
    wait_for("the message to be processed", || queue_is_empty(&emulator).then_some(())).await;
    assert_eq!(app.bodies("ProcessOnboarding").len(), 1);
    assert_eq!(host(&emulator).status()["listeners"][0]["state"], "listening");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_output_binding_without_send_rights_fails_the_invocation() {
    let app = App::new(host_json(json!({}))).function(
        "ProcessOnboarding",
        json!({ "bindings": [
            sb_trigger(true),
            { "name": "completionEvent", "type": "serviceBus", "direction": "out", "topicName": TOPIC, "connection": "ServiceBusConnection" }
        ]}),
    );
    let mut receive_only = scenario_without_grants();
    receive_only.role_assignments.push(RoleAssignment {
        principal_id: APP_PRINCIPAL.into(),
        role: "Azure Service Bus Data Receiver".into(),
        scope: NS_ID.into(),
        description: None,
    });
    let answer = r#"{"Outputs":{"completionEvent":{"n":1}}}"#;
    let emulator =
        start_in(&app, options(&app, &[("TEST_HANDLER_MODE", &format!("respond:{answer}"))]), receive_only).await;
    send(&emulator, BODY);
    wait_for("a failed invocation", || {
        (host(&emulator).status()["invocations"]["failed"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let last_error = host(&emulator).status()["lastError"].as_str().unwrap().to_owned();
    assert!(
        last_error.contains(&format!("'Send' claim(s) are required to perform this operation. Resource: 'sb://{NS}.servicebus.windows.net/{TOPIC}'")),
        "{last_error}"
    );
    let all = format!("{TOPIC}/subscriptions/all");
    assert!(emulator.shared().bus.peek(NS, &all, 0, 10).unwrap().is_empty(), "nothing was sent");
    emulator.shutdown().await;
}

/// A timer trigger follows its NCRONTAB schedule (from an app setting) on the emulator's clock: nothing fires until
/// the clock reaches the next occurrence, then one invocation with a `TimerInfo`; a jump over several occurrences
/// fires once, past due.
#[tokio::test]
async fn a_timer_fires_on_its_schedule_on_the_emulators_clock() {
    let timer = json!({ "bindings": [
        { "name": "watchTimer", "type": "timerTrigger", "direction": "in", "schedule": "%WATCH_SCHEDULE%" }
    ]});
    let app = App::new(host_json(json!({}))).function("WatchKeys", timer);
    let emulator = start(&app, options(&app, &[("WATCH_SCHEDULE", "0 */5 * * * *")])).await;
    let shared = emulator.shared();
    // Move to just before an occurrence: the clock only moves when told, so nothing has fired.
    let now = shared.clock.now();
    let to_next = 300 - (i64::from(now.minute()) % 5 * 60 + i64::from(now.second()));
    shared.advance_clock(Duration::from_secs(u64::try_from(to_next - 2).unwrap()));
    let occurrence = (shared.clock.now() + time::Duration::seconds(2)).replace_nanosecond(0).unwrap();
    shared.advance_clock(Duration::from_secs(3));
    let first = wait_for("the first occurrence", || app.bodies("WatchKeys").into_iter().next()).await;
    let body: Value = serde_json::from_str(&first).unwrap();
    let fired_at = time::OffsetDateTime::parse(
        body["Metadata"]["sys"]["UtcNow"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(fired_at >= occurrence, "fired at {fired_at}, before the occurrence {occurrence}");
    let info = &body["Data"]["watchTimer"];
    assert_eq!(info["IsPastDue"], false, "{body:#}");
    assert!(info["ScheduleStatus"]["Last"].is_null(), "{body:#}");
    assert!(info["ScheduleStatus"]["Next"].as_str().unwrap().contains(":00.0000000Z"), "{body:#}");
    assert_eq!(body["Metadata"]["sys"]["MethodName"], "WatchKeys");
    // Three occurrences jumped over: one invocation, past due.
    shared.advance_clock(Duration::from_secs(15 * 60));
    let second = wait_for("the past-due occurrence", || app.bodies("WatchKeys").get(1).cloned()).await;
    let body: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(body["Data"]["watchTimer"]["IsPastDue"], true, "{body:#}");
    assert!(body["Data"]["watchTimer"]["ScheduleStatus"]["Last"].is_string());
    let next = time::OffsetDateTime::parse(
        body["Data"]["watchTimer"]["ScheduleStatus"]["Next"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(next > shared.clock.now(), "the missed occurrences fired once; the next one is ahead: {next}");
}

#[tokio::test]
async fn a_timer_with_a_bad_schedule_stops_the_host_naming_the_function() {
    let timer = json!({ "bindings": [
        { "name": "watchTimer", "type": "timerTrigger", "direction": "in", "schedule": "*/5 * * * *" }
    ]});
    let app = App::new(host_json(json!({}))).function("WatchKeys", timer);
    let error = start_error(&app).await;
    assert!(error.contains("WatchKeys") && error.contains("six fields"), "{error}");
}
