//! Encrypted access tokens (JWE, RFC 7516 compact form: five segments), as Auth0 issues for an
//! API without a signing setup and calls "opaque": nobody but the provider can read them, so
//! they are never taken for a JWS, even when their protected header names the `iss` of a JWT
//! upstream. They go to the default opaque upstream's userinfo, like any opaque token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use token_exchange::config::UpstreamSettings;
use wiremock::ResponseTemplate;

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
