use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use super::UpstreamHttpSettings;
use crate::clock::{SharedClock, Stopwatch, UnixTime};
use crate::metrics::Metrics;
use crate::per_thread::PerThread;
use crate::vocabulary::ValidationError;

/// Why an upstream HTTP exchange failed, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// Timeouts, connection errors, 5xx and 429: transient, never a verdict on a token.
    #[error("{reason}")]
    Unavailable { reason: UnavailableReason, retry_after: Option<Duration> },
    /// Any other non-success status.
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    /// A body that is too large, signed, or not JSON.
    #[error("unusable response body: {0}")]
    Body(String),
}

/// Why an upstream could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableReason {
    Timeout,
    Connect,
    Transport,
    Status(u16),
    /// A body beyond `max_response_bytes`: the answer cannot be used now, whoever is at fault.
    TooLarge(usize),
}

impl UnavailableReason {
    fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else {
            Self::Transport
        }
    }

    fn metric_label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect_error",
            Self::Transport => "transport_error",
            Self::Status(429) => "429",
            Self::Status(_) => "5xx",
            Self::TooLarge(_) => "too_large",
        }
    }
}

impl std::fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("upstream timed out"),
            Self::Connect => f.write_str("cannot connect to upstream"),
            Self::Transport => f.write_str("upstream transport error"),
            Self::Status(code) => write!(f, "upstream answered HTTP {code}"),
            Self::TooLarge(limit) => write!(f, "upstream answer larger than {limit} bytes"),
        }
    }
}

/// Why the upstream HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("upstream_http.proxy {0}")]
    Proxy(String),
    #[error("upstream_http.ca_file {0}")]
    CaFile(String),
    #[error(transparent)]
    Client(#[from] reqwest::Error),
}

/// Which upstream a call goes to and what for; labels its metrics.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamCall<'a> {
    pub upstream: &'a str,
    pub kind: &'static str,
}

/// The one HTTP client for every upstream: bounded time, bounded body, no redirects. Each
/// thread has a connection pool of its own, so a connection's task runs on the worker that
/// awaits its answers.
#[derive(Clone)]
pub struct UpstreamHttp {
    clients: Arc<PerThread<reqwest::Client>>,
    max_response_bytes: usize,
    metrics: Metrics,
    /// For `X-RateLimit-Reset`, an instant rather than a wait.
    clock: SharedClock,
}

impl UpstreamHttp {
    pub fn new(settings: &UpstreamHttpSettings, metrics: Metrics, clock: SharedClock) -> Result<Self, HttpSetupError> {
        let egress = settings.egress().map_err(HttpSetupError::Proxy)?;
        let extra_roots = settings.extra_roots().map_err(HttpSetupError::CaFile)?;
        let proxies = super::egress::proxies(&egress, &settings.no_proxy, |name| std::env::var(name).ok())?;
        tracing::info!(%egress, "how upstream requests leave the network");
        // One client per thread, all alike.
        let client = || {
            let builder = reqwest::Client::builder()
                .connect_timeout(settings.connect_timeout)
                .timeout(settings.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("token-exchange/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(60))
                .tls_certs_merge(extra_roots.iter().cloned());
            // Without one, reqwest would read the environment again, where we keep loopback out.
            proxies.iter().cloned().fold(builder.no_proxy(), reqwest::ClientBuilder::proxy).build()
        };
        let clients = PerThread::try_new(|_| client())?;
        Ok(Self { clients: Arc::new(clients), max_response_bytes: settings.max_response_bytes, metrics, clock })
    }

    /// The calling thread's client.
    pub fn client(&self) -> &reqwest::Client {
        self.clients.get()
    }

    /// Sends `request` and decodes a 2xx JSON body of at most the configured size, recording
    /// status and latency under `call`.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        call: UpstreamCall<'_>,
        request: reqwest::RequestBuilder,
    ) -> Result<T, HttpFailure> {
        let body = self.send(call, request, Answer::Json).await?;
        // serde's message can quote the body; only its category goes into errors and logs.
        serde_json::from_slice(&body)
            .map_err(|e| HttpFailure::Body(format!("not the expected JSON ({:?})", e.classify())))
    }

    /// Sends `request` and returns the compact JWS of a 2xx answer of type `media_type`
    /// (`application/jwt`, `application/token-introspection+jwt`), unverified: whoever asked
    /// checks its signature.
    pub async fn send_signed(
        &self,
        call: UpstreamCall<'_>,
        request: reqwest::RequestBuilder,
        media_type: &'static str,
    ) -> Result<String, HttpFailure> {
        let body = self.send(call, request, Answer::Signed(media_type)).await?;
        let text = String::from_utf8(body).map_err(|_| HttpFailure::Body("a signed answer that is not text".into()))?;
        Ok(text.trim().to_owned())
    }

    #[tracing::instrument(name = "upstream_call", skip_all, fields(upstream = call.upstream, kind = call.kind, status))]
    async fn send(
        &self,
        call: UpstreamCall<'_>,
        request: reqwest::RequestBuilder,
        expected: Answer,
    ) -> Result<Vec<u8>, HttpFailure> {
        let started = Stopwatch::start();
        let result = self.fetch_body(request.headers(trace_context()), expected).await;
        let status = match &result {
            Ok(_) => "2xx".to_owned(),
            Err(HttpFailure::Status(code)) => code.to_string(),
            Err(HttpFailure::Unavailable { reason, .. }) => reason.metric_label().to_owned(),
            Err(HttpFailure::Body(_)) => "bad_body".to_owned(),
        };
        tracing::Span::current().record("status", status.as_str());
        self.metrics.upstream_request(call.upstream, call.kind, status, started.elapsed());
        result
    }

    async fn fetch_body(&self, request: reqwest::RequestBuilder, expected: Answer) -> Result<Vec<u8>, HttpFailure> {
        let transport =
            |e: reqwest::Error| HttpFailure::Unavailable { reason: UnavailableReason::of(&e), retry_after: None };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(HttpFailure::Unavailable {
                reason: UnavailableReason::Status(status.as_u16()),
                retry_after: retry_after(response.headers(), self.clock.now()),
            });
        }
        if !status.is_success() {
            return Err(HttpFailure::Status(status.as_u16()));
        }
        expected.check(response.headers())?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(HttpFailure::Unavailable {
                    reason: UnavailableReason::TooLarge(self.max_response_bytes),
                    retry_after: None,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// W3C `traceparent` for the current span, so the provider's trace joins ours.
fn trace_context() -> HeaderMap {
    struct Injector(HeaderMap);
    impl opentelemetry::propagation::Injector for Injector {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(key.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current());
    let mut headers = Injector(HeaderMap::new());
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut headers));
    headers.0
}

/// What kind of body a caller can use.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// JSON; a signed `application/jwt` answer is refused, as nobody asked for one.
    Json,
    /// A JWS of exactly this media type.
    Signed(&'static str),
}

impl Answer {
    fn check(self, headers: &HeaderMap) -> Result<(), HttpFailure> {
        let media_type = media_type(headers);
        match self {
            Self::Json if media_type.as_deref() == Some("application/jwt") => {
                Err(HttpFailure::Body("signed (application/jwt) responses are not supported".into()))
            }
            Self::Json => Ok(()),
            Self::Signed(wanted) if media_type.as_deref() == Some(wanted) => Ok(()),
            Self::Signed(wanted) => Err(HttpFailure::Body(format!(
                "a signed answer ({wanted}) was required, the upstream answered {}",
                media_type.as_deref().unwrap_or("without a Content-Type")
            ))),
        }
    }
}

/// The `Content-Type` without its parameters, lower-cased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// The longest wait we pass on: an upstream's `Retry-After` is advice for us, not a lever
/// to park every gateway for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long the upstream asks us to wait, at most [`MAX_RETRY_AFTER`]: `Retry-After` in
/// seconds (the HTTP-date form is rare from IdPs and ignored), else Auth0's
/// `X-RateLimit-Reset`, the Unix time at which its limit resets.
fn retry_after(headers: &HeaderMap, now: UnixTime) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    let wait = match number(RETRY_AFTER.as_str()) {
        Some(seconds) => Duration::from_secs(seconds),
        None => now.until(UnixTime::from_secs(i64::try_from(number("x-ratelimit-reset")?).ok()?)),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

impl HttpFailure {
    /// A failure as a verdict: transient trouble is `Unavailable`; anything else needs an
    /// operator and is `Misconfigured`, named after `what` was asked.
    pub fn into_verdict(self, what: &str) -> ValidationError {
        match self {
            Self::Unavailable { reason, retry_after } => ValidationError::unavailable(reason, retry_after),
            other => ValidationError::Misconfigured(format!("{what}: {other}")),
        }
    }
}
