//! Logs and traces: JSON logs on stdout, OTLP trace export when the standard `OTEL_EXPORTER_OTLP_*` settings are
//! present, and W3C trace context taken from the message.
//!
//! The Functions host captures stdout as Information-level console logs and treats stderr as errors, so everything
//! goes to stdout. The OTLP exporter uses the SDK's default batch processor on its own thread with a blocking client
//! (reference `rust-crates.md` §6: the async client panics there).

use std::collections::BTreeMap;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the tracer provider alive; call [`Telemetry::shutdown`] before exit to flush spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter. Blocking, so it runs off the async runtime.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Whether OTLP export is configured by the standard variables.
pub fn otlp_configured(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| lookup(name).is_some_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber. `json` selects JSON lines (production) or human-readable text (local runs).
pub fn init(json: bool, otlp: bool) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    };
    // A provider exists even without an exporter: trace context from messages must still flow to Azure calls and
    // events, and that needs OpenTelemetry span contexts.
    let provider = build_provider(otlp);
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cmk-handler"))
        // The SDK logs through `tracing` itself; exporting those would loop.
        .with_filter(tracing_subscriber::filter::filter_fn(|m| !m.target().starts_with("opentelemetry")));
    let _ = tracing_subscriber::registry().with(filter()).with(fmt_layer).with(otel_layer).try_init();
    Telemetry { provider: Some(provider) }
}

fn build_provider(otlp: bool) -> SdkTracerProvider {
    let resource = Resource::builder().with_service_name("cmk-onboarding-handler").build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if !otlp {
        return builder.build();
    }
    builder.with_batch_exporter(LazyOtlpExporter::default()).build()
}

/// The OTLP exporter, built at the first export on the batch processor's own thread: building its HTTP client loads
/// the system trust store, which the host's readiness probe must not wait for (ARCHITECTURE.md, decision "Nothing
/// before listening").
#[derive(Debug, Default)]
struct LazyOtlpExporter {
    resource: Option<Resource>,
    /// `None` when the exporter could not be built (reported once, on stderr).
    exporter: std::sync::OnceLock<Option<opentelemetry_otlp::SpanExporter>>,
}

impl LazyOtlpExporter {
    fn exporter(&self) -> Option<&opentelemetry_otlp::SpanExporter> {
        self.exporter
            .get_or_init(|| {
                // The exporter reads OTEL_EXPORTER_OTLP_{,TRACES_}ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS itself.
                match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
                    Ok(mut exporter) => {
                        if let Some(resource) = &self.resource {
                            SpanExporter::set_resource(&mut exporter, resource);
                        }
                        Some(exporter)
                    }
                    Err(error) => {
                        eprintln!("OTLP exporter disabled: {error}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl SpanExporter for LazyOtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let exporter = self.exporter();
        async move {
            match exporter {
                Some(exporter) => exporter.export(batch).await,
                None => Err(OTelSdkError::InternalFailure("OTLP exporter disabled".into())),
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.exporter.get().and_then(Option::as_ref).map_or(Ok(()), |e| e.shutdown_with_timeout(timeout))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.get().and_then(Option::as_ref).map_or(Ok(()), |e| e.force_flush())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = Some(resource.clone());
    }
}

/// Reads W3C trace context from Service Bus application properties, case-insensitively, falling back to the Azure
/// SDKs' `Diagnostic-Id` property for `traceparent`.
pub struct AppPropertiesExtractor<'a>(pub &'a BTreeMap<String, serde_json::Value>);

impl std::fmt::Debug for AppPropertiesExtractor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AppPropertiesExtractor").finish_non_exhaustive()
    }
}

impl Extractor for AppPropertiesExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let find = |name: &str| self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str());
        find(key).or_else(|| if key == "traceparent" { find("Diagnostic-Id") } else { None })
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The parent context carried by a message, if any.
pub fn parent_context(properties: &BTreeMap<String, serde_json::Value>) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&AppPropertiesExtractor(properties)))
}

/// The current span's `traceparent`, for events and scheduled copies.
pub fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent").filter(|v: &String| !v.is_empty())
}
