//! The host's invocation payloads, as the repository's specs show them (`specs/functions/derived/`), decode to the
//! exact message body in both trigger encodings: `dataType: binary` and the default double-encoded string.

use cmk_handler::function::invocation::decode;

fn derived(name: &str) -> Vec<u8> {
    let path = format!("{}/../specs/functions/derived/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const BODY: &str =
    r#"{"onboardingId":"obd-7f3c","tenantId":"contoso","subscriptionId":"00000000-0000-0000-0000-000000000000"}"#;

#[test]
fn binary_and_default_forms_give_the_same_body_and_metadata() {
    let binary = decode(&derived("servicebus-trigger.binary-datatype.request.json"), "onboardingMessage").unwrap();
    let default = decode(&derived("servicebus-trigger.default-datatype.request.json"), "onboardingMessage").unwrap();
    assert_eq!(String::from_utf8(binary.body.clone()).unwrap(), BODY);
    assert_eq!(binary.body, default.body);
    for message in [&binary, &default] {
        assert_eq!(message.message_id.as_deref(), Some("c2f1e0a4d6b94a3f8e2b1c0d9e8f7a6b"));
        assert_eq!(message.correlation_id.as_deref(), Some("req-1234"));
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.delivery_count, 1);
        assert_eq!(message.sequence_number, Some(42));
        assert_eq!(message.application_properties["source"], "portal");
    }
}

/// A timer invocation (`TimerInfo` under the binding's name, `sys` metadata; reference
/// `functions-custom-handler.md`): the host's time and the next occurrence, which the key watch spreads its probes by;
/// times without an offset are UTC; anything else is unknown, not an error.
#[test]
fn a_timer_invocation_gives_the_run_time_and_the_next_occurrence() {
    use cmk_handler::function::invocation::timer_run;
    use time::macros::datetime;
    let body = br#"{"Data":{"watchTimer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-12-03T10:00:00.0000000Z","Next":"2026-12-03T10:30:00","LastUpdated":"2026-12-03T10:15:00.0012345Z"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"WatchKeys","UtcNow":"2026-12-03T10:15:00.0012345Z","RandGuid":"0f8fad5b-d9cb-469f-a165-70867728950e"}}}"#;
    let run = timer_run(body);
    assert_eq!(run.fired_at, Some(datetime!(2026-12-03 10:15:00.0012345 UTC)));
    assert_eq!(run.next, Some(datetime!(2026-12-03 10:30:00 UTC)));
    let unknown = timer_run(br#"{"Data":{"watchTimer":{"ScheduleStatus":null}},"Metadata":{}}"#);
    assert_eq!((unknown.fired_at, unknown.next), (None, None));
    assert_eq!(timer_run(b"not json"), Default::default());
}
