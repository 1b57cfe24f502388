//! One source of truth for the queue's and the topic's settings: `infra/modules/servicebus.bicep` deploys them; the
//! AsyncAPI document, the settings table in `docs/integrating.md`, the testbed's scenario and `cmkctl` itself must say
//! the same (found by an operator: the docs said a 10-minute duplicate-detection window and a 1-minute lock while
//! infra deployed 1 day and 5 minutes). Also: the subscription `events tail` uses by default is one infra deploys.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::repo_root;

/// The settings compared, as the Bicep names them.
const QUEUE_SETTINGS: &[&str] = &[
    "lockDuration",
    "maxDeliveryCount",
    "defaultMessageTimeToLive",
    "deadLetteringOnMessageExpiration",
    "requiresDuplicateDetection",
    "duplicateDetectionHistoryTimeWindow",
];
const TOPIC_SETTINGS: &[&str] =
    &["defaultMessageTimeToLive", "requiresDuplicateDetection", "duplicateDetectionHistoryTimeWindow"];

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The text of the `{ … }` block that follows `start` in `text`.
fn block<'a>(text: &'a str, start: &str) -> &'a str {
    let at = text.find(start).unwrap_or_else(|| panic!("no {start:?}"));
    let open = at + text[at..].find('{').expect("a block");
    let mut depth = 0;
    for (offset, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + offset];
                }
            }
            _ => {}
        }
    }
    panic!("unclosed block after {start:?}")
}

/// `name: value` lines of a Bicep or YAML block, quotes removed, comments skipped.
fn settings(block: &str, names: &[&str]) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in block.lines().map(str::trim).filter(|l| !l.starts_with("//") && !l.starts_with('#')) {
        if let Some((name, value)) = line.split_once(':')
            && names.contains(&name.trim())
            && !found.contains_key(name.trim())
        {
            found.insert(name.trim().to_owned(), value.trim().trim_matches('\'').trim_matches('"').to_owned());
        }
    }
    found
}

fn bicep() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let text = read("infra/modules/servicebus.bicep");
    let queue = settings(block(&text, "resource onboardingQueue "), QUEUE_SETTINGS);
    let topic = settings(block(&text, "resource eventsTopic "), TOPIC_SETTINGS);
    assert_eq!(queue.len(), QUEUE_SETTINGS.len(), "the queue sets every compared setting: {queue:?}");
    assert_eq!(topic.len(), TOPIC_SETTINGS.len(), "the topic sets every compared setting: {topic:?}");
    (queue, topic)
}

#[test]
fn asyncapi_says_what_infra_deploys() {
    let (queue, topic) = bicep();
    let text = read("schemas/asyncapi.yaml");
    let channels = &text[text.find("\nchannels:").unwrap()..text.find("\noperations:").unwrap()];
    let (queue_part, topic_part) = channels.split_at(channels.find("  onboardingEvents:").unwrap());
    assert_eq!(settings(queue_part, QUEUE_SETTINGS), queue, "channel onboarding, x-servicebus");
    assert_eq!(settings(topic_part, TOPIC_SETTINGS), topic, "channel onboardingEvents, x-servicebus");
}

/// `docs/integrating.md` has one table of these settings; every other mention in the docs points to it.
#[test]
fn the_documented_settings_are_the_deployed_ones() {
    let (queue, topic) = bicep();
    let text = read("docs/integrating.md");
    let mut documented_queue = BTreeMap::new();
    let mut documented_topic = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`')).collect();
        if cells.len() >= 3 && QUEUE_SETTINGS.contains(&cells[0]) {
            documented_queue.insert(cells[0].to_owned(), cells[1].to_owned());
            if cells[2] != "–" {
                documented_topic.insert(cells[0].to_owned(), cells[2].to_owned());
            }
        }
    }
    assert_eq!(documented_queue, queue, "docs/integrating.md, queue column");
    assert_eq!(documented_topic, topic, "docs/integrating.md, topic column");
    // No other figure for these settings anywhere in the docs (an ISO 8601 duration that infra does not deploy).
    let deployed: Vec<&String> = queue.values().chain(topic.values()).collect();
    for file in ["docs/integrating.md", "docs/cmkctl.md", "README.md", "infra/README.md"] {
        for word in read(file).split(|c: char| !c.is_ascii_alphanumeric()) {
            let iso = word.len() > 2
                && word.starts_with('P')
                && word[1..].chars().all(|c| c.is_ascii_digit() || "TDHMS".contains(c));
            assert!(
                !iso || deployed.iter().any(|d| d.as_str() == word),
                "{file} mentions {word}, which infra does not deploy"
            );
        }
    }
}

#[test]
fn the_testbed_and_cmkctl_use_the_deployed_settings() {
    let (queue, topic) = bicep();
    let scenario: Value = serde_json::from_str(&read("samples/scenario.json")).unwrap();
    let namespace = &scenario["serviceBus"][0];
    let as_text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let queue_json = &namespace["queues"][0];
    for name in
        ["lockDuration", "maxDeliveryCount", "requiresDuplicateDetection", "duplicateDetectionHistoryTimeWindow"]
    {
        assert_eq!(as_text(&queue_json[name]), queue[name], "samples/scenario.json queue {name}");
    }
    assert_eq!(
        as_text(&namespace["topics"][0]["duplicateDetectionHistoryTimeWindow"]),
        topic["duplicateDetectionHistoryTimeWindow"],
        "samples/scenario.json topic"
    );
    let window = queue["duplicateDetectionHistoryTimeWindow"].clone();
    let seconds = iso_seconds(&window);
    assert_eq!(cmkctl::journal::DUPLICATE_DETECTION_WINDOW.whole_seconds(), seconds, "cmkctl's send journal");
}

/// Found by an operator: `events tail` defaulted to a subscription `all` that infra does not create.
#[test]
fn events_tail_defaults_to_a_subscription_infra_deploys() {
    use clap::Parser;
    let text = read("infra/modules/servicebus.bicep");
    let mut deployed: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("name: '") {
            deployed.push(name.trim_end_matches('\'').to_owned());
        }
    }
    let cli = cmkctl::Cli::parse_from(["cmkctl", "events", "tail"]);
    let cmkctl::cli::Command::Events { command: cmkctl::cli::EventsCommand::Tail(tail) } = cli.command else {
        panic!("parsed another command")
    };
    assert!(deployed.contains(&tail.subscription), "{} is not deployed (deployed: {deployed:?})", tail.subscription);
    let scenario = read("samples/scenario.json");
    assert!(scenario.contains(&format!(r#""name": "{}""#, tail.subscription)), "the testbed has it too");
}

/// `PT1M`, `P1D`, `P14D`, `PT1H30M`: enough ISO 8601 for entity settings.
fn iso_seconds(text: &str) -> i64 {
    let (date, time) = text.trim_start_matches('P').split_once('T').unwrap_or((text.trim_start_matches('P'), ""));
    let mut total = 0;
    for (part, units) in [(date, [('D', 86_400)].as_slice()), (time, [('H', 3600), ('M', 60), ('S', 1)].as_slice())] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                let unit = units.iter().find(|(u, _)| *u == c).unwrap_or_else(|| panic!("{text}: unit {c}")).1;
                total += number.parse::<i64>().unwrap() * unit;
                number.clear();
            }
        }
    }
    total
}
