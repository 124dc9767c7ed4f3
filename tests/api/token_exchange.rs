//! RFC 8693 §2 request and response behaviour of POST /token.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Exchanges a valid subject token with `extra` parameters and expects an OAuth error.
async fn assert_exchange_refused(extra: &[(&str, &str)], status: u16, error: &str) {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    assert_oauth_error(app.exchange(&idp.token(app.now()), extra).await, status, error).await;
}

#[tokio::test]
async fn issues_a_token_that_a_downstream_service_verifies_with_our_jwks() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.exchange(&idp.token(app.now()), &[("audience", "orders")]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store", "RFC 6749 §5.1");
    assert_eq!(response.headers()["pragma"], "no-cache", "RFC 6749 §5.1");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN, "RFC 8693 §2.2.1");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none());
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "orders").await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(claims["aud"], "orders");
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(claims["iat"], app.now());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(claims["scope"], "read write", "subject scopes narrowed to the client's");
    assert_eq!(body["scope"], "read write");
    assert_eq!(claims["email"], "user@example.com", "configured identity claim copied");
    assert!(claims.get("phone_number").is_none(), "unconfigured claims are not copied");
    assert_eq!(claims["acr"], "urn:mace:incommon:iap:silver", "RFC 9068 §2.2.1");
    assert_eq!(claims["auth_time"], app.now() - 60, "RFC 9068 §2.2.1");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(body["expires_in"].as_i64().unwrap(), lifetime, "expires_in matches the token");
    assert_eq!(lifetime, 300, "default ttl");
}

#[tokio::test]
async fn minted_token_never_outlives_the_subject_token() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token_with(app.now(), json!({"exp": app.now() + 42}));

    let body: Value = app.exchange(&subject, &[]).await.json().await.unwrap();

    assert_eq!(body["expires_in"], 42);
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["exp"], app.now() + 42);
}

#[tokio::test]
async fn without_audience_or_resource_the_default_audience_is_used() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let body: Value = app.exchange(&idp.token(app.now()), &[]).await.json().await.unwrap();

    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["aud"], "internal", "RFC 9068 §3: never an empty aud");
}

#[tokio::test]
async fn repeated_audience_and_resource_parameters_all_become_aud() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let extra = [("audience", "orders"), ("audience", "billing"), ("resource", "https://orders.internal/api")];

    let response = app.exchange(&idp.token(app.now()), &extra).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "billing").await;
    assert_eq!(claims["aud"], json!(["orders", "billing", "https://orders.internal/api"]));
}

#[tokio::test]
async fn an_audience_the_client_is_not_registered_for_is_invalid_target() {
    assert_exchange_refused(&[("audience", "payroll")], 400, "invalid_target").await;
}

#[tokio::test]
async fn a_resource_with_a_fragment_is_invalid_target() {
    assert_exchange_refused(&[("resource", "https://orders.internal/api#frag")], 400, "invalid_target").await;
}

#[tokio::test]
async fn a_relative_resource_is_invalid_target() {
    assert_exchange_refused(&[("resource", "/orders")], 400, "invalid_target").await;
}

#[tokio::test]
async fn a_missing_subject_token_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.post_token(&[("grant_type", TOKEN_EXCHANGE), ("subject_token_type", JWT)]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_missing_subject_token_type_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let token = idp.token(app.now());

    let response = app.post_token(&[("grant_type", TOKEN_EXCHANGE), ("subject_token", &token)]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_unsupported_subject_token_type_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let token = idp.token(app.now());
    for token_type in
        ["urn:ietf:params:oauth:token-type:saml2", "urn:example:custom", "URN:IETF:PARAMS:OAUTH:TOKEN-TYPE:JWT"]
    {
        let response = app
            .post_token(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &token),
                ("subject_token_type", token_type),
            ])
            .await;
        assert_oauth_error(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_unsupported_requested_token_type_is_invalid_request_not_an_empty_token() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app
        .exchange(&idp.token(app.now()), &[("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")])
        .await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn requesting_a_jwt_issues_a_jwt() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let body: Value = app.exchange(&idp.token(app.now()), &[("requested_token_type", JWT)]).await.json().await.unwrap();

    assert_eq!(body["issued_token_type"], JWT);
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn an_actor_token_without_its_type_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let actor = idp.token(app.now());

    let response = app.exchange(&idp.token(app.now()), &[("actor_token", &actor)]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_actor_token_type_without_an_actor_token_is_invalid_request() {
    assert_exchange_refused(&[("actor_token_type", JWT)], 400, "invalid_request").await;
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.post_token(&[("grant_type", "client_credentials")]).await;

    assert_oauth_error(response, 400, "unsupported_grant_type").await;
}

#[tokio::test]
async fn a_repeated_grant_type_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let token = idp.token(app.now());

    let response = app
        .post_token(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &token),
            ("subject_token_type", JWT),
        ])
        .await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn unknown_parameters_are_ignored_and_empty_values_count_as_omitted() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.exchange(&idp.token(app.now()), &[("foo", "bar"), ("scope", ""), ("audience", "")]).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_json_body_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app
        .http
        .post(app.url("/token"))
        .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .json(&json!({"grant_type": TOKEN_EXCHANGE}))
        .send()
        .await
        .unwrap();

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn get_on_the_token_endpoint_is_method_not_allowed() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.http.get(app.url("/token")).send().await.unwrap();

    assert_eq!(response.headers()["allow"], "POST");
    assert_oauth_error(response, 405, "invalid_request").await;
}

#[tokio::test]
async fn an_oversized_body_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let huge = "x".repeat(200 * 1024);

    let response = app.exchange(&huge, &[]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_body_that_is_not_utf8_form_data_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app
        .http
        .post(app.url("/token"))
        .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x80])
        .send()
        .await
        .unwrap();

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_requested_scope_beyond_the_subject_or_client_is_invalid_scope() {
    assert_exchange_refused(&[("scope", "read admin")], 400, "invalid_scope").await;
}

#[tokio::test]
async fn a_malformed_scope_is_invalid_scope() {
    assert_exchange_refused(&[("scope", "read \"quoted\"")], 400, "invalid_scope").await;
}

#[tokio::test]
async fn a_narrower_scope_is_issued_as_requested() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let body: Value = app.exchange(&idp.token(app.now()), &[("scope", "read")]).await.json().await.unwrap();

    assert_eq!(body["scope"], "read");
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["scope"], "read", "RFC 8693 §4.2: a space-delimited string");
}

#[tokio::test]
async fn an_actor_token_becomes_the_act_claim_with_earlier_actors_nested() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token_with(app.now(), json!({"act": {"sub": "earlier-service"}}));
    let actor = idp.token_with(app.now(), json!({"sub": "batch-service"}));

    let response = app.exchange(&subject, &[("actor_token", &actor), ("actor_token_type", JWT)]).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(claims["act"], json!({"sub": "batch-service", "iss": idp.issuer(), "act": {"sub": "earlier-service"}}));
}

#[tokio::test]
async fn an_actor_not_named_by_may_act_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token_with(app.now(), json!({"may_act": {"sub": "trusted-service"}}));
    let actor = idp.token_with(app.now(), json!({"sub": "other-service"}));

    let response = app.exchange(&subject, &[("actor_token", &actor), ("actor_token_type", JWT)]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_invalid_actor_token_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let expired_actor = idp.token_with(app.now(), json!({"sub": "svc", "exp": app.now() - 3600}));

    let response =
        app.exchange(&idp.token(app.now()), &[("actor_token", &expired_actor), ("actor_token_type", JWT)]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_client_bound_to_another_upstream_is_unauthorized_client() {
    let idp = FakeIdp::start().await;
    let other = FakeIdp::start().await;
    let mut second = other.upstream_settings();
    second.name = "other".into();
    let app = TestApp::builder(&idp)
        .configure(|s| {
            s.upstreams.push(second);
            s.clients[0].upstream = Some("other".into());
        })
        .spawn()
        .await;

    let response = app.exchange(&idp.token(app.now()), &[]).await;

    assert_oauth_error(response, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn error_descriptions_never_echo_the_subject_token() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let forged = format!("{}x", idp.token(app.now()));

    let response = app.exchange(&forged, &[]).await;

    let body = assert_oauth_error(response, 400, "invalid_request").await;
    assert!(!body.to_string().contains(&forged[..40]));
}

async fn minted(app: &TestApp, subject: &str, extra: &[(&str, &str)]) -> Value {
    let response = app.exchange(subject, extra).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_repeated_exchange_reuses_the_minted_token_while_half_its_life_is_left() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token(app.now());
    let first = minted(&app, &subject, &[]).await;

    app.clock.advance(Duration::from_secs(100));
    let again = minted(&app, &subject, &[]).await;
    app.clock.advance(Duration::from_secs(60));
    let renewed = minted(&app, &subject, &[]).await;

    assert_eq!(again["access_token"], first["access_token"]);
    assert_eq!(again["expires_in"], 200, "the remaining life of the reused token");
    assert_ne!(renewed["access_token"], first["access_token"], "past half its life: a new token");
    assert_eq!(renewed["expires_in"], 300);
}

#[tokio::test]
async fn another_audience_or_scope_gets_a_token_of_its_own() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token(app.now());

    let plain = minted(&app, &subject, &[]).await;
    let orders = minted(&app, &subject, &[("audience", "orders")]).await;
    let read = minted(&app, &subject, &[("scope", "read")]).await;

    assert_ne!(plain["access_token"], orders["access_token"]);
    assert_ne!(plain["access_token"], read["access_token"]);
    let claims = app.verify_as_downstream(orders["access_token"].as_str().unwrap(), "orders").await;
    assert_eq!(claims["aud"], "orders");
}

#[tokio::test]
async fn without_reuse_every_exchange_mints_a_new_token() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.tokens.reuse_minted = false).spawn().await;
    let subject = idp.token(app.now());

    let first = minted(&app, &subject, &[]).await;
    let second = minted(&app, &subject, &[]).await;

    assert_ne!(first["access_token"], second["access_token"]);
}

#[tokio::test]
async fn repeated_unknown_parameters_are_ignored_too() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.exchange(&idp.token(app.now()), &[("x-trace", "1"), ("x-trace", "2")]).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn undeclared_methods_on_read_endpoints_are_method_not_allowed() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.http.delete(app.url(JWKS_PATH)).send().await.unwrap();

    assert_eq!(response.headers()["allow"], "GET");
    assert_oauth_error(response, 405, "invalid_request").await;
}
