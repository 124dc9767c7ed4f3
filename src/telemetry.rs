//! Logging setup: JSON lines for machines or pretty text for people. Spans are created with
//! `skip_all` so no token or secret enters a log line by accident.

use clap::ValueEnum;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;

use crate::clock::Stopwatch;
use crate::gateway::Refused;
use crate::oauth::OAuthError;
use crate::report::Chain;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// `[telemetry]`: traces for an OpenTelemetry backend, exported over OTLP/gRPC. Off unless an
/// endpoint is set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector, for example `http://otel-collector:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the traces; `OTEL_SERVICE_NAME` wins, `token-exchange` otherwise.
    pub service_name: Option<String>,
}

/// The trace exporter, flushed when the service stops.
#[must_use = "dropping it stops nothing, but call shutdown() to flush the last spans"]
pub struct Traces(Option<SdkTracerProvider>);

impl Traces {
    pub fn shutdown(self) {
        if let Some(provider) = self.0
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "the last spans could not be exported");
        }
    }
}

/// Installs the global subscriber without trace export.
pub fn init(format: LogFormat) {
    init_with_traces(format, &TelemetrySettings::default()).shutdown();
}

/// Installs the global subscriber: log lines filtered by `RUST_LOG` (default `info`), and, when
/// an OTLP endpoint is configured, every span of this crate exported as a trace. Must run
/// inside the tokio runtime, which the gRPC exporter uses.
pub fn init_with_traces(format: LogFormat, settings: &TelemetrySettings) -> Traces {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = otlp_provider(settings);
    let traces = provider.as_ref().map(|provider| {
        let crate_spans = EnvFilter::new(concat!(env!("CARGO_CRATE_NAME"), "=info"));
        tracing_opentelemetry::layer().with_tracer(provider.tracer("token-exchange")).with_filter(crate_spans)
    });
    let logs_filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(traces);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(logs_filter()),
            )
            .try_init(),
        LogFormat::Pretty => {
            registry.with(tracing_subscriber::fmt::layer().pretty().with_filter(logs_filter())).try_init()
        }
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
    Traces(provider)
}

fn otlp_provider(settings: &TelemetrySettings) -> Option<SdkTracerProvider> {
    let endpoint = settings
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|endpoint| !endpoint.trim().is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(&endpoint).build() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("error: traces will not be exported to {endpoint}: {error}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(settings.service_name.clone().unwrap_or_else(|| "token-exchange".into()));
    }
    Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// Reads W3C `traceparent`/`tracestate` from a request.
struct IncomingHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for IncomingHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// One log line per request, inside tracing-actix-web's root span (which carries the request
/// id), and the only place a failed request is logged: refusals at INFO with their OAuth code,
/// server faults at ERROR with their whole cause. Only the path is logged, never the query
/// string or a body.
pub async fn access_log(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = Stopwatch::start();
    let response = next.call(request).await?;
    let failure = response.response().error().and_then(Failure::of);
    let is_fault = failure.as_ref().is_some_and(|f| f.status >= 500);
    if !(is_fault || tracing::enabled!(tracing::Level::INFO)) {
        return Ok(response);
    }
    let (method, path) = (response.request().method(), response.request().path());
    let status = response.status().as_u16();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match failure {
        Some(failure) if is_fault => tracing::error!(
            %method, path, status, elapsed_us, error = failure.code, cause = %Chain(failure.error), "request failed"
        ),
        Some(failure) => tracing::info!(
            %method,
            path,
            status,
            elapsed_us,
            error = failure.code,
            error_description = %failure.error,
            security_event = failure.security_event,
            "request refused"
        ),
        None => tracing::info!(%method, path, status, elapsed_us, "request completed"),
    }
    Ok(response)
}

/// What the access log says of a failed request, whichever endpoint answered it.
struct Failure<'a> {
    status: u16,
    code: &'static str,
    security_event: Option<&'static str>,
    error: &'a (dyn std::error::Error + 'static),
}

impl<'a> Failure<'a> {
    fn of(error: &'a actix_web::Error) -> Option<Self> {
        if let Some(oauth) = error.as_error::<OAuthError>() {
            return Some(Self {
                status: oauth.status(),
                code: oauth.code(),
                security_event: oauth.security_event(),
                error: oauth,
            });
        }
        let refused = error.as_error::<Refused>()?;
        Some(Self {
            status: refused.refusal.status(),
            code: refused.refusal.outcome(),
            security_event: refused.refusal.security_event(),
            error: &refused.refusal,
        })
    }
}

/// The request's root span: method, route, path and request id. Unlike the default builder it
/// records no query string, user agent or client address, so a credential that a careless
/// client puts in a URL never reaches a log line.
pub struct RedactedRootSpan;

impl tracing_actix_web::RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage as _;
        let request_id = request.extensions().get::<tracing_actix_web::RequestId>().map(ToString::to_string);
        let span = tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = request.match_pattern().unwrap_or_default(),
            http.path = request.path(),
            request_id = request_id.unwrap_or_default(),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        // A gateway's `traceparent` makes this request part of its trace.
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&IncomingHeaders(request.headers()))
        });
        let _ = span.set_parent(parent);
        let context = span.context();
        let trace = context.span().span_context().clone();
        if trace.is_valid() {
            span.record("trace_id", tracing::field::display(trace.trace_id()));
        }
        span
    }

    /// Records the status on the span. Unlike the default builder it logs nothing: the access
    /// log has already said everything about the request, once.
    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status_code", status.as_u16());
        span.record("otel.status_code", if status.is_server_error() { "ERROR" } else { "OK" });
    }
}
