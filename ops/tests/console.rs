//! The ops console (`cmkctl console`): in a real headless Chromium (Debian's, driven through ChromeDriver by
//! `fantoccini`) against the whole testbed with the real handler — load, group, inspect, replay a group, see the counts
//! change — and its guards against other sites and DNS rebinding, request by request.

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use azure_emulator::scenario::{Change, RoleAssignment, ServicePrincipal};
use azure_emulator::servicebus::NewMessage;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{CONTOSO_ACCOUNT, CONTOSO_TENANT, FABRIKAM_TENANT, OpsBed, TestBed, WAIT, fabrikam, onboarding};
use tokio::io::AsyncBufReadExt;

const FABRIKAM_SP: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";

/// Evaluates `script` (a JS expression) in the page until it is true; fails after [`WAIT`] with what it last saw.
async fn wait_for(client: &Client, what: &str, script: &str) {
    let started = Instant::now();
    loop {
        let value = client.execute(&format!("return ({script});"), vec![]).await.unwrap_or(Value::Null);
        if value == Value::Bool(true) {
            return;
        }
        if started.elapsed() > WAIT {
            let page = client.execute("return document.body.innerText;", vec![]).await.unwrap_or_default();
            panic!("timed out waiting for: {what}\npage:\n{}", page.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(client: &Client, script: &str) -> String {
    client.execute(&format!("return String({script});"), vec![]).await.unwrap().as_str().unwrap_or_default().to_owned()
}

/// A free loopback port for ChromeDriver.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn chromedriver(browser: &browser::Browser) -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = tokio::process::Command::new(&browser.chromedriver)
        .arg(format!("--port={port}"))
        .envs(browser.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} ({})", browser.chromedriver.display(), browser::INSTALL));
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

async fn headless(browser: &browser::Browser, port: u16, profile: &std::path::Path) -> Client {
    // The flags that work on this workplace's closed network (no background connections, no sandbox as root).
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,1100",
    ];
    let mut options = json!({ "binary": browser.chromium, "args": args });
    options["args"].as_array_mut().unwrap().push(format!("--user-data-dir={}", profile.display()).into());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a ChromeDriver session")
}

/// An onboarding of Fabrikam's that has waited on the customer past the deadline: the handler dead-letters it.
fn past_deadline(id: &str) -> NewMessage {
    let mut message = NewMessage::new(fabrikam(id));
    message.message_id = Some(format!("producer-{id}"));
    message.content_type = Some("application/json".into());
    let eight_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(8);
    let first = eight_days_ago.format(&time::format_description::well_known::Rfc3339).unwrap();
    message.application_properties.insert("cmk-attempt".into(), Value::from(40));
    message.application_properties.insert("cmk-first-attempt-at".into(), Value::from(first));
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser_groups_inspects_and_replays() {
    let browser = browser::provision();
    let started = Instant::now();
    let bed = support::with_handler(&[]).await;
    for i in 0..2 {
        let poison =
            onboarding(&format!("obd-poison-{i}"), CONTOSO_TENANT, CONTOSO_ACCOUNT, "http://169.254.169.254/", "cmk");
        bed.send(&poison, &format!("producer-poison-{i}"));
        bed.send_message(past_deadline(&format!("obd-fab-{i}")));
    }
    bed.wait_until("four dead letters", |bed| bed.dead_letters().len() == 4 && bed.queue().is_empty()).await;

    let (master_key, _) = bed.host().keys();
    // `--function-key=KEY`: a random key may begin with `-`.
    let key = format!("--function-key={master_key}");
    let mut console = bed
        .cmkctl(&["console", "--listen", "127.0.0.1:0", "--events-subscription", "all", &key])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let url =
        tokio::time::timeout(WAIT, lines.next_line()).await.expect("the console prints its URL").unwrap().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/?token="), "{url}");

    let (_driver, port) = chromedriver(&browser).await;
    let profile = bed.dir.path().join("chromium-profile");
    let client = headless(&browser, port, &profile).await;
    client.goto(&url).await.unwrap();
    assert!(!client.current_url().await.unwrap().as_str().contains("token="), "the token leaves the address bar");

    // Load: the counts and the groups.
    wait_for(&client, "the dead-letter count", "document.getElementById('count-dead').textContent === '4'").await;
    wait_for(&client, "two groups", "document.querySelectorAll('#groups tbody tr').length === 2").await;
    let deadline_reason =
        text(&client, "[...document.querySelectorAll('#groups tbody tr')].map(r => r.dataset.reason).find(r => r !== 'InvalidVaultUri')").await;
    let group = format!("#groups tr[data-reason='{deadline_reason}']");
    assert_eq!(text(&client, &format!("document.querySelector(\"{group} .count\").textContent")).await, "2");
    assert_eq!(
        text(&client, "document.querySelector(\"#groups tr[data-reason='InvalidVaultUri'] .count\").textContent").await,
        "2"
    );

    // Group, then inspect one message: properties, body and what blocks it now.
    client.find(Locator::Css(&format!("{group} td.reason"))).await.unwrap().click().await.unwrap();
    wait_for(&client, "the list filtered to the group", "document.querySelectorAll('#letters tbody tr').length === 2")
        .await;
    let row = client.find(Locator::XPath("//table[@id='letters']//td[text()='obd-fab-0']")).await.unwrap();
    row.click().await.unwrap();
    wait_for(
        &client,
        "the diagnosis",
        "(document.getElementById('diagnosis')||{}).textContent?.includes('ServicePrincipalMissing')",
    )
    .await;
    let inspected = text(&client, "document.getElementById('inspect').innerText").await;
    assert!(inspected.contains("producer-obd-fab-0") && inspected.contains(FABRIKAM_TENANT), "{inspected}");

    // The customer fixes their side; the operator replays the whole group.
    bed.apply(vec![
        Change::AddServicePrincipal {
            service_principal: ServicePrincipal {
                id: FABRIKAM_SP.into(),
                app_id: support::APP_CLIENT_ID.into(),
                tenant_id: FABRIKAM_TENANT.into(),
                account_enabled: true,
            },
        },
        Change::GrantRole {
            vault: "fabrikam-kv".into(),
            assignment: RoleAssignment {
                principal_id: FABRIKAM_SP.into(),
                role: "Key Vault Crypto Service Encryption User".into(),
                scope: "/".into(),
            },
        },
        Change::SetPurgeProtection { vault: "fabrikam-kv".into(), enabled: true },
    ]);
    client.find(Locator::Css(&format!("{group} button.replay-group"))).await.unwrap().click().await.unwrap();
    wait_for(&client, "the confirmation", "!document.getElementById('confirm').hidden").await;
    let question = text(&client, "document.getElementById('confirm-text').textContent").await;
    assert!(question.contains("Replay 2 dead letter(s)"), "{question}");
    client.find(Locator::Id("confirm-yes")).await.unwrap().click().await.unwrap();
    wait_for(
        &client,
        "the replay's progress to finish",
        "document.getElementById('job').textContent.includes('2 replayed')",
    )
    .await;

    // The counts change, and the outcome shows among the recent events.
    wait_for(&client, "two dead letters left", "document.getElementById('count-dead').textContent === '2'").await;
    wait_for(
        &client,
        "completed events for the replayed onboardings",
        "[...document.querySelectorAll('#events tbody tr')].filter(r => r.dataset.type === 'completed').length === 2",
    )
    .await;
    wait_for(&client, "one group left", "document.querySelectorAll('#groups tbody tr').length === 1").await;
    let remaining: Vec<String> = bed
        .dead_letters()
        .iter()
        .filter_map(|m| {
            m.application_properties.get("cmk-dead-letter-reason").and_then(Value::as_str).map(str::to_owned)
        })
        .collect();
    assert_eq!(remaining, ["InvalidVaultUri", "InvalidVaultUri"]);
    let audit = bed.audit();
    assert_eq!(audit.iter().filter(|r| r["record"] == "result" && r["outcome"] == "replayed").count(), 2);

    let screenshot = client.screenshot().await.unwrap();
    let path = support::repo_root().join("target/cmkctl-console.png");
    std::fs::write(&path, &screenshot).unwrap();
    if let Some(docs) = std::env::var_os("CMKCTL_SCREENSHOT") {
        std::fs::write(&docs, &screenshot).unwrap();
    }
    client.close().await.unwrap();
    let _ = console.start_kill();
    eprintln!("console browser test: {:.1} s (screenshot {})", started.elapsed().as_secs_f64(), path.display());
}

/// The guards, request by request, against a console started in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_other_sites_rebinding_and_strangers() {
    use clap::Parser;
    let bed = TestBed::broker_only().await;
    let connection_string = support::connection_string();
    let cli = cmkctl::Cli::parse_from([
        "cmkctl",
        "--emulator",
        bed.emulator.url(),
        "--connection-string",
        &connection_string,
        "dlq",
        "list",
    ]);
    let connection = cmkctl::connect::connect(&cli.connection).unwrap();
    let options = |listen: &str| cmkctl::console::ConsoleOptions {
        listen: listen.parse().unwrap(),
        queue: "onboarding".into(),
        topic: "onboarding-events".into(),
        events_subscription: None,
        diagnose: None,
        operator: "test".into(),
        audit: Some(bed.state_dir().join("audit.jsonl")),
    };
    let refused = cmkctl::console::start(connection.clone(), options("0.0.0.0:0")).await;
    assert!(refused.unwrap_err().contains("loopback"), "never on a public interface");

    let console = cmkctl::console::start(connection, options("127.0.0.1:0")).await.unwrap();
    let base = format!("http://{}", console.address);
    let token = console.url.split("token=").nth(1).unwrap().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let first = http.get(&console.url).send().await.unwrap();
    assert_eq!(first.status(), 303, "the token is traded for a cookie");
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let stranger = http.get(format!("{base}/api/overview?counts=only")).send().await.unwrap();
    assert_eq!(stranger.status(), 401, "no cookie, no data");
    let wrong_token = http.get(format!("{base}/?token=guess")).send().await.unwrap();
    assert_eq!(wrong_token.status(), 401);
    let ok = http.get(format!("{base}/api/overview?counts=only")).header("cookie", &session).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    // DNS rebinding: a page from another name that resolves to 127.0.0.1 arrives with its own Host.
    let port = console.address.port();
    let rebound = http
        .get(format!("{base}/api/overview?counts=only"))
        .header("host", format!("attacker.example:{port}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);

    let action = json!({ "action": "purge", "messages": [{ "sequenceNumber": 1, "messageId": "m" }] }).to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = http.post(format!("{base}/api/actions")).header("cookie", &session).body(action.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let json_type = ("content-type", "application/json".to_owned());
    let token_header = ("x-cmkctl-token", token.clone());
    // A cross-site form post carries the cookie (were it not SameSite) but never the header.
    assert_eq!(post(vec![json_type.clone()]).await.unwrap().status(), 403, "no token header");
    let form = ("content-type", "application/x-www-form-urlencoded".to_owned());
    assert_eq!(post(vec![form, token_header.clone()]).await.unwrap().status(), 403, "not JSON");
    let evil = ("origin", "https://attacker.example".to_owned());
    assert_eq!(post(vec![json_type.clone(), token_header.clone(), evil]).await.unwrap().status(), 403, "other origin");
    let cross = ("sec-fetch-site", "cross-site".to_owned());
    assert_eq!(post(vec![json_type.clone(), token_header.clone(), cross]).await.unwrap().status(), 403, "cross-site");
    let own = ("origin", base.clone());
    let same = ("sec-fetch-site", "same-origin".to_owned());
    let accepted = post(vec![json_type, token_header, own, same]).await.unwrap();
    assert_eq!(accepted.status(), 202, "the console's own page may act");
}
