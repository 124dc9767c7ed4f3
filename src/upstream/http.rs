use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use crate::config::UpstreamHttpSettings;

/// Why an upstream HTTP exchange failed, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// Timeouts, connection errors, 5xx and 429: transient, never a verdict on a token.
    #[error("{reason}")]
    Unavailable { reason: String, retry_after_secs: Option<u64> },
    /// Any other non-success status.
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    /// A body that is too large or not the JSON we expect.
    #[error("unusable response body: {0}")]
    Body(String),
}

/// The one HTTP client for every upstream: bounded time, bounded body, no redirects.
#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl UpstreamHttp {
    pub fn new(settings: &UpstreamHttpSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("token-exchange/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { client, max_response_bytes: settings.max_response_bytes })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and decodes a 2xx JSON body of at most the configured size.
    pub async fn send_json<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, HttpFailure> {
        let mut response = request
            .send()
            .await
            .map_err(|e| HttpFailure::Unavailable { reason: transport_reason(&e), retry_after_secs: None })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(HttpFailure::Unavailable {
                reason: format!("upstream answered HTTP {}", status.as_u16()),
                retry_after_secs: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            return Err(HttpFailure::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpFailure::Unavailable { reason: transport_reason(&e), retry_after_secs: None })?
        {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(HttpFailure::Body(format!("larger than {} bytes", self.max_response_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| HttpFailure::Body(e.to_string()))
    }
}

fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "upstream timed out".into()
    } else if error.is_connect() {
        "cannot connect to upstream".into()
    } else {
        "upstream transport error".into()
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from IdPs and ignored).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}
