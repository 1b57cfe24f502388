//! The key watch's decisions, from the transitions in `tests/data/key-watch/transitions.json`: each case is a
//! recorded state (none, the state of a healthy probe, lost access, or already warned), an observation, and the
//! events expected. The state written back must be read back the same and make the next identical probe quiet.

use cmk_handler::workflow::key_watch::{Configuration, Observation, WatchEvent, WatchState, decide, key_version};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn fixture() -> Value {
    let path = format!("{}/tests/data/key-watch/transitions.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn time(value: &Value) -> Option<OffsetDateTime> {
    value.as_str().map(|t| OffsetDateTime::parse(t, &Rfc3339).unwrap())
}

fn observation(value: &Value) -> Observation {
    Observation {
        configuration: value["configuration"].as_object().map(|c| Configuration {
            vault_uri: c["vaultUri"].as_str().unwrap().to_owned(),
            key_name: c["keyName"].as_str().unwrap().to_owned(),
        }),
        current_key_id: value["currentKeyId"].as_str().map(str::to_owned),
        expires: time(&value["expires"]),
        access_lost: value["accessLost"].as_str().map(str::to_owned),
    }
}

fn kind(event: &WatchEvent) -> &'static str {
    match event {
        WatchEvent::KeyRotated { .. } => "KeyRotated",
        WatchEvent::KeyExpiring { .. } => "KeyExpiring",
        WatchEvent::KeyAccessLost { .. } => "KeyAccessLost",
        WatchEvent::KeyAccessRestored { .. } => "KeyAccessRestored",
        WatchEvent::ConfigurationDrift { .. } => "ConfigurationDrift",
    }
}

#[test]
fn transitions_publish_each_event_once_per_distinct_state() {
    let data = fixture();
    let now = time(&data["now"]).unwrap();
    let warn = time::Duration::days(data["warnDays"].as_i64().unwrap());
    let healthy = observation(&data["cases"][0]["observed"]);
    let (baseline, _) = decide(None, &healthy, now, warn);
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let recorded = match case["recorded"].as_str() {
            None => None,
            Some("SAME") => Some(baseline.clone()),
            Some("WARNED") => Some(WatchState { expiry_warned: true, ..baseline.clone() }),
            Some(lost) => {
                let reason = lost.strip_prefix("LOST:").expect("LOST:<reason>");
                Some(WatchState { access: reason.to_owned(), ..baseline.clone() })
            }
        };
        let observed = observation(&case["observed"]);
        let (state, events) = decide(recorded.as_ref(), &observed, now, warn);
        let mut kinds: Vec<&str> = events.iter().map(kind).collect();
        kinds.sort_unstable();
        let mut expected: Vec<&str> = case["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        expected.sort_unstable();
        assert_eq!(kinds, expected, "{name}: {events:?}");
        // What is written reads back the same, fits a tag value, and the same probe again is quiet.
        let encoded = state.encode();
        assert!(encoded.len() <= 256, "{name}: {encoded}");
        assert_eq!(WatchState::decode(&encoded).as_ref(), Some(&state), "{name}: {encoded}");
        let (again, repeat) = decide(Some(&state), &observed, now, warn);
        assert_eq!((again, repeat), (state, vec![]), "{name}: the same observation twice");
    }
}

#[test]
fn a_state_the_watch_did_not_write_is_a_new_baseline() {
    for text in [
        "",
        "v2;k=a;a=ok;x=0;c=-",
        "v1;k=a;a=ok;x=2;c=-",
        "v1;k=a;a=ok;x=0",
        "v1;k=a;a=ok;x=0;c=-;extra",
        "v1;k=a b;a=ok;x=0;c=-",
    ] {
        assert_eq!(WatchState::decode(text), None, "{text:?}");
    }
    assert_eq!(key_version("https://kv.vault.azure.net/keys/cmk/ABC"), Some("abc".to_owned()));
    assert_eq!(key_version("https://kv.vault.azure.net/cmk/abc"), None);
}
