//! Outgoing Azure requests carry the W3C `traceparent` of the current tracing span.

mod azure_support;

use std::sync::Arc;

use azure_support::{CountingToken, Stub, json, transport};
use cmk_handler::azure::{ArmClient, TokenSource};
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
