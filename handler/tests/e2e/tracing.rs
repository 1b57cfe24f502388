//! W3C trace context flows from the message (`traceparent`, or the Azure SDKs' `Diagnostic-Id`) to the events.

use azure_emulator::servicebus::NewMessage;

use crate::testbed::contoso;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

async fn traced(property: &str) {
    let bed = crate::testbed::start().await;
    let mut message = NewMessage::new(contoso("obd-traced"));
    message.message_id = Some("msg-traced".into());
    message.application_properties.insert(property.into(), format!("00-{TRACE_ID}-b7ad6b7169203331-01").into());
    bed.send_message(message);
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    let event = &bed.events_of("completed")[0];
    let traceparent = event["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent on {event:#}"));
    assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-")), "{traceparent}");
    let on_the_message = bed.peek(crate::testbed::ALL_EVENTS)[0].application_properties["diagnostic-id"].clone();
    assert!(on_the_message.as_str().unwrap().contains(TRACE_ID), "{on_the_message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_reaches_the_event() {
    traced("traceparent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostic_id_reaches_the_event() {
    traced("Diagnostic-Id").await;
}
