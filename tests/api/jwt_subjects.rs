//! Validation of JWT subject tokens against the upstream issuer's JWKS (RFC 8693 §2.1, RFC 8725).

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use token_exchange::keys::SigningAlgorithm;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

async fn assert_subject_rejected(app: &TestApp, subject: &str) {
    assert_oauth_error(app.exchange(subject, &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let claims = idp.claims(app.now());
    let header = json!({"alg": "none", "typ": "JWT"});

    assert_subject_rejected(&app, &format!("{}.{}.", b64_json(&header), b64_json(&claims))).await;
    assert_subject_rejected(&app, &format!("{}.{}.c2ln", b64_json(&header), b64_json(&claims))).await;
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_public_key_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let public_key = serde_json::to_vec(&idp.current_key().jwk()).unwrap();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": idp.current_key().kid()});
    let input = format!("{}.{}", b64_json(&header), b64_json(&idp.claims(app.now())));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &public_key), input.as_bytes());

    assert_subject_rejected(&app, &format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))).await;
}

#[tokio::test]
async fn an_algorithm_outside_the_upstream_allow_list_is_rejected() {
    let mut idp = FakeIdp::start().await;
    idp.rotate(SigningAlgorithm::ES256).await;
    let app = TestApp::builder(&idp)
        .configure(|s| s.upstreams[0].algorithms = vec![jsonwebtoken::Algorithm::RS256])
        .spawn()
        .await;

    assert_subject_rejected(&app, &idp.token(app.now())).await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let impostor = UpstreamKey::generate(SigningAlgorithm::RS256);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": idp.current_key().kid()});

    assert_subject_rejected(&app, &impostor.sign_raw(&header, &idp.claims(app.now()))).await;
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"exp": app.now() - 3600}))).await;
}

#[tokio::test]
async fn a_token_that_expires_later_is_refused_once_the_clock_passes_its_exp() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token_with(app.now(), json!({"exp": app.now() + 60}));
    assert_eq!(app.exchange(&subject, &[]).await.status(), 200);

    app.clock.advance(Duration::from_secs(120));

    assert_subject_rejected(&app, &subject).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_beyond_the_leeway_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"nbf": app.now() + 120}))).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_within_the_leeway_is_accepted() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.exchange(&idp.token_with(app.now(), json!({"nbf": app.now() + 10})), &[]).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_token_for_another_audience_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"aud": "https://elsewhere.example"}))).await;
}

#[tokio::test]
async fn a_token_without_exp_or_sub_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"exp": null}))).await;
    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"sub": null}))).await;
}

#[tokio::test]
async fn a_token_from_an_unknown_issuer_is_rejected_without_fetching_anything() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, &idp.token_with(app.now(), json!({"iss": "https://evil.example"}))).await;
    assert_eq!(idp.jwks_fetches().await, 0);
}

#[tokio::test]
async fn an_opaque_subject_token_is_invalid_request_when_no_upstream_takes_opaque_tokens() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    assert_subject_rejected(&app, "2YotnFZFEjr1zCsicMWpAA").await;
}

#[tokio::test]
async fn the_jwks_is_fetched_once_and_reused() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    for _ in 0..3 {
        assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);
    }

    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once_per_cooldown_and_finds_a_rotated_key() {
    let mut idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);

    idp.rotate(SigningAlgorithm::ES256).await;
    app.clock.advance(Duration::from_secs(31));
    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_eq!(response.status(), 200, "the rotated key was fetched");
    assert_eq!(idp.jwks_fetches().await, 1);

    // Inside the cooldown an unknown kid may be a key published a moment ago: not refused
    // yet, the client is told when to come back.
    let unknown = json!({"alg": "ES256", "typ": "JWT", "kid": "never-published"});
    let subject = idp.current_key().sign_raw(&unknown, &idp.claims(app.now()));
    for _ in 0..3 {
        let response = app.exchange(&subject, &[]).await;
        assert_eq!(response.headers()["retry-after"], "30", "when the next fetch is allowed");
        assert_oauth_error(response, 503, "temporarily_unavailable").await;
    }
    assert_eq!(idp.jwks_fetches().await, 1, "no refetch inside the cooldown");
    app.clock.advance(Duration::from_secs(30));
    assert_subject_rejected(&app, &subject).await;
    assert_eq!(idp.jwks_fetches().await, 2, "one refetch once the cooldown is over");
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_followed() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let attacker = UpstreamKey::generate(SigningAlgorithm::RS256);
    Mock::given(method("GET"))
        .and(path("/attacker/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [attacker.jwk()]})))
        .mount(&idp.server)
        .await;
    let header = json!({
        "alg": "RS256",
        "kid": attacker.kid(),
        "jku": format!("{}/attacker/jwks.json", idp.issuer()),
        "x5u": format!("{}/attacker/cert.pem", idp.issuer()),
    });

    assert_subject_rejected(&app, &attacker.sign_raw(&header, &idp.claims(app.now()))).await;
    assert_eq!(idp.requests_to("/attacker/jwks.json").await, 0);
    assert_eq!(idp.requests_to("/attacker/cert.pem").await, 0);
}

#[tokio::test]
async fn an_unreachable_jwks_is_temporarily_unavailable_with_retry_after() {
    let idp = FakeIdp::start().await;
    idp.server.reset().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "7"))
        .mount(&idp.server)
        .await;
    let app = spawn_app(&idp).await;

    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_eq!(response.headers()["retry-after"], "7");
    assert_oauth_error(response, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn the_jwks_uri_is_discovered_from_the_issuer_when_not_configured() {
    let idp = FakeIdp::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"issuer": idp.issuer(), "jwks_uri": format!("{}{JWKS_PATH}", idp.issuer())})),
        )
        .mount(&idp.server)
        .await;
    let app = TestApp::builder(&idp).configure(|s| s.upstreams[0].jwks_uri = None).spawn().await;

    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(idp.requests_to("/.well-known/openid-configuration").await, 1);
}

#[tokio::test]
async fn a_jwks_with_unknown_key_types_still_serves_its_usable_keys() {
    let idp = FakeIdp::start().await;
    idp.server.reset().await;
    let keys = json!({"keys": [
        {"kty": "PQC", "kid": "future", "x": "AAAA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        idp.current_key().jwk(),
    ]});
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(keys))
        .mount(&idp.server)
        .await;
    let app = spawn_app(&idp).await;

    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);
}

#[tokio::test]
async fn a_jwks_larger_than_the_response_cap_is_not_used() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.upstream_http.max_response_bytes = 256).spawn().await;

    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_oauth_error(response, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn an_unreachable_jwks_is_asked_at_most_once_per_cooldown() {
    let idp = FakeIdp::start().await;
    idp.server.reset().await;
    Mock::given(method("GET")).and(path(JWKS_PATH)).respond_with(ResponseTemplate::new(500)).mount(&idp.server).await;
    let app = spawn_app(&idp).await;

    for sub in ["a", "b", "c"] {
        let response = app.exchange(&idp.token_with(app.now(), json!({"sub": sub})), &[]).await;
        assert_oauth_error(response, 503, "temporarily_unavailable").await;
    }

    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn a_missing_claim_is_named_in_the_error() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    for claim in ["aud", "sub", "exp"] {
        let token = idp.token_with(app.now(), serde_json::json!({ claim: null }));
        let refused = assert_oauth_error(app.exchange(&token, &[]).await, 400, "invalid_request").await;
        assert!(refused["error_description"].as_str().unwrap().contains(&format!("no {claim} claim")), "{refused}");
    }
}
