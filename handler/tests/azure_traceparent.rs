//! Outgoing Azure requests carry the W3C `traceparent` of the current tracing span.

mod azure_support;

use std::sync::Arc;

use azure_support::{CountingToken, Stub, json, transport};
use cmk_handler::azure::servicebus::OutgoingMessage;
use cmk_handler::azure::{ArmClient, ServiceBusAuth, ServiceBusClient, TokenSource};
use cmk_handler::cloud::Cloud;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn the_current_span_is_propagated_as_traceparent() {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let stub = Stub::start(|_, _| json(200, serde_json::json!({"id": "/subscriptions/s/x"}))).await;
    let transport = transport(&stub.url);
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, Arc::new(CountingToken::default()), None);
    let arm = ArmClient::new(&Cloud::Public.arm_endpoint(), transport, tokens, azure_support::fast_retry()).unwrap();

    let span = tracing::info_span!("process_onboarding");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    arm.get_storage_account("/subscriptions/s/x").instrument(span).await.unwrap();

    let requests = stub.requests();
    let traceparent = requests[0].header("traceparent").expect("a traceparent header");
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent} vs trace {trace_id}");
    assert_ne!(trace_id, "00000000000000000000000000000000");
}

/// Over the Service Bus REST API every header of a send that is not the protocol's own becomes an application
/// property of the message, so the request's trace context must stay off sends: messages carry theirs in
/// `diagnostic-id`. Other Service Bus requests (receives, settlement) keep it.
#[tokio::test]
async fn service_bus_sends_carry_no_trace_headers() {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let stub = Stub::start(|_, _| (201, vec![], String::new())).await;
    let transport = transport(&stub.url);
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, Arc::new(CountingToken::default()), None);
    let service_bus = ServiceBusClient::new(
        "myns.servicebus.windows.net",
        transport,
        ServiceBusAuth::Bearer(tokens),
        azure_support::fast_retry(),
    )
    .unwrap();
    let mut message = OutgoingMessage { body: b"{}".to_vec(), ..OutgoingMessage::default() };
    message
        .application_properties
        .insert("diagnostic-id".into(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());

    service_bus.send("onboarding-events", &message).instrument(tracing::info_span!("publish")).await.unwrap();
    let _ = service_bus
        .peek_lock("onboarding", std::time::Duration::from_secs(1))
        .instrument(tracing::info_span!("receive"))
        .await;

    let requests = stub.requests();
    let send = &requests[0];
    assert_eq!(send.path, "/onboarding-events/messages");
    for header in ["traceparent", "tracestate"] {
        assert!(send.header(header).is_none(), "{header} would become an application property");
    }
    assert!(send.header("diagnostic-id").is_some());
    assert!(requests[1].header("traceparent").is_some(), "a receive still propagates the trace");
}
