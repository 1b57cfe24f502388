//! W3C trace context flows from the message (`traceparent`, or the Azure SDKs' `Diagnostic-Id`) to the events.

use azure_emulator::servicebus::NewMessage;

use crate::testbed::contoso;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

async fn traced(property: &str) {
    let bed = crate::testbed::start().await;
    let mut message = NewMessage::new(contoso("obd-traced"));
    message.message_id = Some("msg-traced".into());
    message.session_id = crate::testbed::session_of(&message.body);
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

/// With the standard `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/HTTP, carrying the message's
/// trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_the_message_trace_id() {
    use std::sync::{Arc, Mutex};

    /// Path and body of every request the collector received.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push((uri.path().to_owned(), body.to_vec()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let bed = crate::testbed::start_with(
        crate::testbed::sample_scenario(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let mut message = NewMessage::new(contoso("obd-otlp"));
    message.message_id = Some("msg-otlp".into());
    message.session_id = crate::testbed::session_of(&message.body);
    message.application_properties.insert("traceparent".into(), format!("00-{TRACE_ID}-b7ad6b7169203331-01").into());
    bed.send_message(message);
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;

    let trace_id: Vec<u8> =
        (0..TRACE_ID.len()).step_by(2).map(|i| u8::from_str_radix(&TRACE_ID[i..i + 2], 16).unwrap()).collect();
    bed.wait_until("an OTLP export carrying the message's trace id", |_| {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(path, body)| path == "/v1/traces" && body.windows(trace_id.len()).any(|w| w == trace_id.as_slice()))
    })
    .await;
}
