//! Auth0's tokens and limits, played by the wiremock provider. Its "opaque" access tokens are
//! encrypted (JWE, RFC 7516 compact form: five segments): nobody but Auth0 can read them, so
//! they are never taken for a JWS, even when their protected header names the `iss` of a JWT
//! upstream, and go to the default opaque upstream's userinfo like any opaque token. Its 429s
//! say when to come back in `X-RateLimit-Reset` (a Unix time), not in `Retry-After`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use token_exchange::config::UpstreamSettings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// One upstream for an Auth0 tenant: JWT access tokens for the API verified offline, every
/// other token asked at userinfo and trusted for the API's token lifetime.
fn auth0_like(idp: &FakeIdp) -> UpstreamSettings {
    let mut upstream = idp.upstream_settings();
    upstream.userinfo_endpoint = idp.opaque_settings("idp", false, true).userinfo_endpoint;
    upstream.default_for_opaque = true;
    upstream.token_lifetime = Some(Duration::from_secs(24 * 3600));
    upstream
}

/// A compact JWE with direct encryption: header, an empty encrypted key, IV, ciphertext, tag.
fn jwe_naming(issuer: &str) -> String {
    let header = b64_json(&json!({"alg": "dir", "enc": "A256GCM", "iss": issuer}));
    let random = |length: usize| {
        let bytes: Vec<u8> =
            std::iter::repeat_with(|| *uuid::Uuid::new_v4().as_bytes()).flatten().take(length).collect();
        URL_SAFE_NO_PAD.encode(bytes)
    };
    format!("{header}..{}.{}.{}", random(12), random(96), random(16))
}

#[tokio::test]
async fn a_jwe_access_token_naming_a_jwt_upstreams_issuer_goes_to_userinfo() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.upstreams = vec![auth0_like(&idp)]).spawn().await;
    let token = jwe_naming(&idp.issuer());
    assert_eq!(token.split('.').count(), 5);
    let profile = json!({"sub": "auth0|5f7c8ec7c33c6c004bbafe82", "email": "jwe@example.com"});
    idp.userinfo_answers(&token, ResponseTemplate::new(200).set_body_json(profile)).await;

    let response = app.exchange_opaque(&token, &[]).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["sub"], "auth0|5f7c8ec7c33c6c004bbafe82");
    assert_eq!(idp.userinfo_calls().await, 1);
    assert_eq!(idp.jwks_fetches().await, 0, "a JWE is not verified as a JWS");
}

/// Userinfo answers every token with Auth0's 429: the limit resets at `reset` (Unix time).
async fn rate_limited_until(idp: &FakeIdp, reset: i64) {
    let limited = ResponseTemplate::new(429)
        .insert_header("X-RateLimit-Limit", "10")
        .insert_header("X-RateLimit-Remaining", "0")
        .insert_header("X-RateLimit-Reset", reset.to_string().as_str());
    Mock::given(method("GET")).and(path(USERINFO_PATH)).respond_with(limited).mount(&idp.server).await;
}

#[tokio::test]
async fn an_auth0_rate_limit_reset_an_hour_ahead_is_passed_on_as_at_most_five_minutes() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.upstreams = vec![auth0_like(&idp)]).spawn().await;
    rate_limited_until(&idp, app.now() + 3600).await;

    let response = app.exchange_opaque("limited", &[]).await;

    assert_eq!(retry_after(&response), Some(300));
    assert_oauth_error(response, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn auth0_429s_open_the_breaker_until_the_rate_limit_resets() {
    let idp = FakeIdp::start().await;
    let mut upstream = auth0_like(&idp);
    upstream.protection.failure_threshold = 2;
    upstream.protection.cool_down = Duration::from_secs(30);
    let app = TestApp::builder(&idp).configure(|s| s.upstreams = vec![upstream]).spawn().await;
    rate_limited_until(&idp, app.now() + 120).await;

    for n in 0..2 {
        assert_oauth_error(app.exchange_opaque(&format!("limited-{n}"), &[]).await, 503, "temporarily_unavailable")
            .await;
    }
    let refused = app.exchange_opaque("limited-2", &[]).await;

    assert_eq!(retry_after(&refused), Some(120), "Auth0's reset, longer than the cool-down");
    assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    assert_eq!(idp.userinfo_calls().await, 2, "an open breaker does not press Auth0");
}
