//! Logging setup: JSON lines for machines or pretty text for people. Spans are created with
//! `skip_all` so no token or secret enters a log line by accident.

use clap::ValueEnum;

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

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer().pretty()).try_init(),
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
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
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = request.match_pattern().unwrap_or_default(),
            http.path = request.path(),
            request_id = request_id.unwrap_or_default(),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
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
