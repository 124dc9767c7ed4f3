//! One provider, two token formats: an upstream that verifies its JWTs offline and introspects
//! the rest (Keycloak's lightweight tokens, Okta's and Auth0's opaque ones), with explicit rules
//! for answers that name no audience and for the clients whose tokens are accepted.

use serde_json::{Value, json};
use token_exchange::config::{Settings, UpstreamSettings};
use wiremock::ResponseTemplate;

use crate::helpers::*;

/// The JWT upstream `idp`, introspecting too.
fn mixed(idp: &FakeIdp) -> UpstreamSettings {
    let introspecting = idp.introspection_upstream();
    let mut upstream = idp.upstream_settings();
    upstream.introspection_endpoint = introspecting.introspection_endpoint;
    upstream.client_id = introspecting.client_id;
    upstream.client_secret = introspecting.client_secret;
    upstream
}

async fn mixed_app(idp: &FakeIdp, change: impl FnOnce(&mut UpstreamSettings)) -> TestApp {
    let mut upstream = mixed(idp);
    change(&mut upstream);
    TestApp::builder(idp).configure(|s| s.upstreams = vec![upstream]).spawn().await
}

/// A JWS of the provider without `aud`, as Keycloak's lightweight access tokens are.
fn audienceless_token(idp: &FakeIdp, now: i64) -> String {
    idp.token_with(now, json!({"aud": null}))
}

fn introspection_body(app: &TestApp, members: Value) -> ResponseTemplate {
    let mut body = json!({"active": true, "sub": "user-123", "exp": app.now() + 600, "client_id": "spa"});
    merge(&mut body, members);
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test]
async fn a_jws_of_a_mixed_upstream_with_an_accepted_audience_is_verified_offline() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |_| {}).await;

    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(idp.introspections().await, 0);
}

#[tokio::test]
async fn a_jws_of_a_mixed_upstream_without_aud_goes_to_introspection() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |u| u.accept_answers_without_audience = true).await;
    let token = audienceless_token(&idp, app.now());
    idp.introspection_answers(&token, introspection_body(&app, json!({"sub": "lightweight-user"}))).await;

    let response = app.exchange(&token, &[]).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["sub"], "lightweight-user", "the provider's answer, not the unverified JWS");
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn a_jws_of_a_mixed_upstream_with_a_foreign_audience_is_refused_without_asking_the_provider() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |_| {}).await;
    let token = idp.token_with(app.now(), json!({"aud": "https://someone-else.example"}));

    let body = assert_oauth_error(app.exchange(&token, &[]).await, 400, "invalid_request").await;

    assert!(body["error_description"].as_str().unwrap().contains("audience"), "{body}");
    assert_eq!(idp.introspections().await, 0);
}

#[tokio::test]
async fn an_introspection_answer_without_aud_is_refused_by_default_when_audiences_are_set() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |_| {}).await;
    let token = audienceless_token(&idp, app.now());
    idp.introspection_answers(&token, introspection_body(&app, json!({}))).await;

    let body = assert_oauth_error(app.exchange(&token, &[]).await, 400, "invalid_request").await;

    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("names no aud"), "{description}");
}

#[tokio::test]
async fn an_introspection_answer_without_aud_is_accepted_where_the_upstream_allows_it() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |u| u.accept_answers_without_audience = true).await;
    let token = audienceless_token(&idp, app.now());
    idp.introspection_answers(&token, introspection_body(&app, json!({}))).await;

    assert_eq!(app.exchange(&token, &[]).await.status(), 200);
}

#[tokio::test]
async fn an_introspection_answer_with_an_accepted_aud_is_accepted_whatever_the_setting() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |_| {}).await;
    let token = audienceless_token(&idp, app.now());
    idp.introspection_answers(&token, introspection_body(&app, json!({"aud": ["x", UPSTREAM_AUDIENCE]}))).await;

    assert_eq!(app.exchange(&token, &[]).await.status(), 200);
}

#[tokio::test]
async fn an_introspection_answer_with_a_foreign_aud_is_refused_even_where_aud_less_answers_are_accepted() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |u| u.accept_answers_without_audience = true).await;
    let token = audienceless_token(&idp, app.now());
    idp.introspection_answers(&token, introspection_body(&app, json!({"aud": "https://someone-else.example"}))).await;

    let body = assert_oauth_error(app.exchange(&token, &[]).await, 400, "invalid_request").await;

    assert!(body["error_description"].as_str().unwrap().contains("audience is not accepted"), "{body}");
}

#[tokio::test]
async fn a_jwt_issued_to_a_client_the_upstream_does_not_allow_is_refused() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |u| u.allowed_clients = vec!["spa".into()]).await;

    let allowed = app.exchange(&idp.token_with(app.now(), json!({"azp": "spa"})), &[]).await;
    let rfc9068 = app.exchange(&idp.token_with(app.now(), json!({"client_id": "spa", "sub": "u2"})), &[]).await;
    let other = app.exchange(&idp.token_with(app.now(), json!({"azp": "mobile", "sub": "u3"})), &[]).await;
    let unnamed = app.exchange(&idp.token_with(app.now(), json!({"sub": "u4"})), &[]).await;

    assert_eq!(allowed.status(), 200);
    assert_eq!(rfc9068.status(), 200, "RFC 9068 names the client in client_id");
    let other = assert_oauth_error(other, 400, "invalid_request").await;
    assert!(other["error_description"].as_str().unwrap().contains("client"), "{other}");
    let unnamed = assert_oauth_error(unnamed, 400, "invalid_request").await;
    assert!(unnamed["error_description"].as_str().unwrap().contains("names no client"), "{unnamed}");
}

#[tokio::test]
async fn an_introspected_token_issued_to_a_client_the_upstream_does_not_allow_is_refused() {
    let idp = FakeIdp::start().await;
    let app = mixed_app(&idp, |u| {
        u.accept_answers_without_audience = true;
        u.allowed_clients = vec!["spa".into()];
    })
    .await;
    let allowed = audienceless_token(&idp, app.now());
    let other = idp.token_with(app.now(), json!({"aud": null, "sub": "someone"}));
    idp.introspection_answers(&allowed, introspection_body(&app, json!({}))).await;
    idp.introspection_answers(&other, introspection_body(&app, json!({"client_id": "mobile"}))).await;

    assert_eq!(app.exchange(&allowed, &[]).await.status(), 200);
    assert_oauth_error(app.exchange(&other, &[]).await, 400, "invalid_request").await;
}

fn validation_error(idp: &FakeIdp, change: impl FnOnce(&mut UpstreamSettings)) -> String {
    let mut settings = Settings::default();
    settings.server.issuer = ISSUER.into();
    let mut upstream = idp.upstream_settings();
    change(&mut upstream);
    settings.upstreams = vec![upstream];
    settings.validate().err().map(|e| e.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn accepting_answers_without_audience_needs_audiences_to_mean_anything() {
    let idp = FakeIdp::start().await;
    let error = validation_error(&idp, |u| {
        *u = idp.opaque_settings("opaque", true, false);
        u.accept_answers_without_audience = true;
    });

    assert!(error.contains("accept_answers_without_audience"), "{error}");
}

#[tokio::test]
async fn allowed_clients_cannot_be_checked_on_userinfo_answers_alone() {
    let idp = FakeIdp::start().await;
    let error = validation_error(&idp, |u| {
        *u = idp.opaque_settings("opaque", false, true);
        u.allowed_clients = vec!["spa".into()];
    });

    assert!(error.contains("allowed_clients"), "{error}");
}
