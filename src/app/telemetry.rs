//! Logs (text or JSON, filtered by `RUST_LOG`) and, with the `otlp` feature
//! and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans exported over OTLP/HTTP (one
//! per reconcile, carrying the object reference).

use tracing_subscriber::EnvFilter;

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs the global subscriber: JSON lines when `json`, else text.
pub fn init(json: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt: BoxedLayer = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let mut layers = vec![fmt];
    layers.extend(otlp_layer());
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
}

#[cfg(feature = "otlp")]
fn otlp_layer() -> Option<BoxedLayer> {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("msp-operator: OTLP export disabled: {e}");
            return None;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("msp-operator")
                .build(),
        )
        .build();
    let tracer = provider.tracer("msp-operator");
    opentelemetry::global::set_tracer_provider(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
}

#[cfg(not(feature = "otlp"))]
fn otlp_layer() -> Option<BoxedLayer> {
    None
}
