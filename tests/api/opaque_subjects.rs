//! Opaque subject tokens: RFC 7662 introspection, OIDC userinfo, and how they are routed.

use std::time::Duration;

use serde_json::{Value, json};
use token_exchange::clock::UnixTime;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn an_active_introspected_token_is_exchanged_with_its_subject_scope_and_expiry() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("opaque-1", app.now() + 120).await;

    let response = app.exchange_opaque("opaque-1", &[("scope", "read")]).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 120, "never beyond the subject token's exp");
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["sub"], "opaque-user");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["email"], "opaque@example.com");
}

#[tokio::test]
async fn introspection_posts_the_token_with_a_hint_and_basic_client_credentials() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    Mock::given(method("POST"))
        .and(path(INTROSPECT_PATH))
        .and(body_string_contains("token=opaque-2&token_type_hint=access_token"))
        .and(header("authorization", basic(UPSTREAM_CLIENT_ID, UPSTREAM_CLIENT_SECRET).as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "u", "exp": app.now() + 60})),
        )
        .expect(1)
        .mount(&idp.server)
        .await;

    assert_eq!(app.exchange_opaque("opaque-2", &[]).await.status(), 200);
}

#[tokio::test]
async fn introspection_can_send_client_credentials_in_the_body() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("opaque", true, false);
    upstream.client_auth_method = token_exchange::config::UpstreamClientAuth::ClientSecretPost;
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    Mock::given(method("POST"))
        .and(path(INTROSPECT_PATH))
        .and(body_string_contains(format!("client_id={UPSTREAM_CLIENT_ID}&client_secret={UPSTREAM_CLIENT_SECRET}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "u", "exp": app.now() + 60})),
        )
        .expect(1)
        .mount(&idp.server)
        .await;

    assert_eq!(app.exchange_opaque("opaque-3", &[]).await.status(), 200);
}

#[tokio::test]
async fn an_inactive_token_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_answers("revoked-1", ResponseTemplate::new(200).set_body_json(json!({"active": false}))).await;

    assert_oauth_error(app.exchange_opaque("revoked-1", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn active_as_a_string_is_not_active() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let body = json!({"active": "true", "sub": "u", "exp": app.now() + 60});
    idp.introspection_answers("stringly", ResponseTemplate::new(200).set_body_json(body)).await;

    assert_oauth_error(app.exchange_opaque("stringly", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn introspection_refusing_our_credentials_is_unavailable_not_a_token_verdict() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_answers("any", ResponseTemplate::new(401)).await;

    assert_oauth_error(app.exchange_opaque("any", &[]).await, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn offline_and_refresh_tokens_are_refused_whichever_member_says_so() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    let answers = [
        ("keycloak-offline", serde_json::json!({"typ": "Offline"})),
        ("standard-refresh", serde_json::json!({"token_type": "refresh_token"})),
        ("cognito-refresh", serde_json::json!({"token_use": "refresh"})),
    ];
    for (token, kind) in answers {
        let mut body = serde_json::json!({"active": true, "sub": "someone", "exp": app.now() + 3600});
        merge(&mut body, kind);
        idp.introspection_answers(token, ResponseTemplate::new(200).set_body_json(body)).await;

        let refused = assert_oauth_error(app.exchange_opaque(token, &[]).await, 400, "invalid_request").await;

        assert!(refused["error_description"].as_str().unwrap().contains("offline"), "{token}: {refused}");
    }
}

#[tokio::test]
async fn an_introspection_400_about_one_token_is_a_verdict_not_a_server_error() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    idp.introspection_answers(
        "odd",
        ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_request"})),
    )
    .await;

    assert_oauth_error(app.exchange_opaque("odd", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_malformed_introspection_answer_is_unavailable_not_a_server_error() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    idp.introspection_answers("garbled", ResponseTemplate::new(200).set_body_string("{\"active\": tru")).await;

    assert_oauth_error(app.exchange_opaque("garbled", &[]).await, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn a_userinfo_only_upstream_requires_sub_and_treats_401_as_invalid() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("auth0", false, true)).spawn().await;
    idp.userinfo_answers("good", ResponseTemplate::new(200).set_body_json(json!({"sub": "auth0|1", "email": "a@b.c"})))
        .await;
    idp.userinfo_answers("nosub", ResponseTemplate::new(200).set_body_json(json!({"email": "a@b.c"}))).await;
    idp.userinfo_answers("expired", ResponseTemplate::new(401)).await;

    let body: Value = app.exchange_opaque("good", &[]).await.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["sub"], "auth0|1");
    assert_eq!(claims["email"], "a@b.c");
    assert_oauth_error(app.exchange_opaque("nosub", &[]).await, 400, "invalid_request").await;
    assert_oauth_error(app.exchange_opaque("expired", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn userinfo_answers_are_trusted_for_userinfo_ttl_only() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("auth0", false, true);
    upstream.userinfo_ttl = Duration::from_secs(60);
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    idp.userinfo_answers("ui-1", ResponseTemplate::new(200).set_body_json(json!({"sub": "auth0|1"}))).await;

    assert_eq!(app.exchange_opaque("ui-1", &[]).await.status(), 200);
    app.clock.advance(Duration::from_secs(59));
    assert_eq!(app.exchange_opaque("ui-1", &[]).await.status(), 200);
    assert_eq!(idp.userinfo_calls().await, 1, "within userinfo_ttl: cached");
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(app.exchange_opaque("ui-1", &[]).await.status(), 200);
    assert_eq!(idp.userinfo_calls().await, 2, "after userinfo_ttl: asked again");
}

#[tokio::test]
async fn token_lifetime_counts_from_first_sight_and_bounds_minted_tokens() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("auth0", false, true);
    upstream.userinfo_ttl = Duration::from_secs(60);
    upstream.token_lifetime = Some(Duration::from_secs(600));
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).with_redis().spawn().await;
    idp.userinfo_answers("ui-2", ResponseTemplate::new(200).set_body_json(json!({"sub": "auth0|2"}))).await;
    let first_seen = app.now();

    assert_eq!(app.exchange_opaque("ui-2", &[]).await.status(), 200);
    app.clock.advance(Duration::from_secs(550));
    let body: Value = app.exchange_opaque("ui-2", &[]).await.json().await.unwrap();
    assert_eq!(body["expires_in"], 50, "minted token ends with the provider's lifetime");
    assert_eq!(idp.userinfo_calls().await, 2);

    app.clock.set(UnixTime::from_secs(first_seen + 601));
    assert_oauth_error(app.exchange_opaque("ui-2", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn introspection_gives_validity_and_userinfo_the_profile_when_both_are_configured() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("both", true, true)).spawn().await;
    let active = json!({"active": true, "sub": "u-7", "exp": app.now() + 300});
    idp.introspection_answers("both-1", ResponseTemplate::new(200).set_body_json(active.clone())).await;
    idp.userinfo_answers("both-1", ResponseTemplate::new(200).set_body_json(json!({"sub": "u-7", "name": "Seven"})))
        .await;
    idp.introspection_answers("both-2", ResponseTemplate::new(200).set_body_json(active)).await;
    idp.userinfo_answers("both-2", ResponseTemplate::new(200).set_body_json(json!({"sub": "someone-else"}))).await;

    let body: Value = app.exchange_opaque("both-1", &[]).await.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!((claims["sub"].as_str(), claims["name"].as_str()), (Some("u-7"), Some("Seven")));
    assert_eq!(body["expires_in"], 300);
    assert_oauth_error(app.exchange_opaque("both-2", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_opaque_token_goes_only_to_the_upstream_bound_to_the_client() {
    let default_idp = FakeIdp::start().await;
    let bound_idp = FakeIdp::start().await;
    let mut bound = bound_idp.opaque_settings("bound", true, false);
    bound.default_for_opaque = false;
    let app = TestApp::builder(&default_idp)
        .with_opaque_upstream(default_idp.opaque_settings("default", true, false))
        .with_opaque_upstream(bound)
        .configure(|s| s.clients[0].upstream = Some("bound".into()))
        .spawn()
        .await;
    bound_idp.introspection_active("routed", app.now() + 60).await;
    default_idp.introspection_active("routed", app.now() + 60).await;

    assert_eq!(app.exchange_opaque("routed", &[]).await.status(), 200);
    assert_eq!(bound_idp.introspections().await, 1);
    assert_eq!(default_idp.introspections().await, 0, "never leaked to another provider");
}

#[tokio::test]
async fn a_jwt_access_token_from_a_known_issuer_is_verified_offline_not_introspected() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;

    let response = app.exchange_opaque(&idp.token(app.now()), &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(idp.introspections().await, 0);
}

#[tokio::test]
async fn an_introspected_token_for_another_audience_is_refused_when_audiences_are_set() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("opaque", true, false);
    upstream.audiences = vec!["https://api.example.com".into()];
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    let ours = json!({"active": true, "sub": "u", "exp": app.now() + 60, "aud": ["https://api.example.com", "x"]});
    let theirs = json!({"active": true, "sub": "u", "exp": app.now() + 60, "aud": "https://other.example"});
    idp.introspection_answers("aud-ours", ResponseTemplate::new(200).set_body_json(ours)).await;
    idp.introspection_answers("aud-theirs", ResponseTemplate::new(200).set_body_json(theirs)).await;

    assert_eq!(app.exchange_opaque("aud-ours", &[]).await.status(), 200);
    assert_oauth_error(app.exchange_opaque("aud-theirs", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_introspected_refresh_token_is_refused() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let body = json!({"active": true, "sub": "u", "exp": app.now() + 60, "typ": "Refresh"});
    idp.introspection_answers("refresh-1", ResponseTemplate::new(200).set_body_json(body)).await;

    assert_oauth_error(app.exchange_opaque("refresh-1", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn userinfo_insufficient_scope_is_a_verdict_on_the_token() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("auth0", false, true)).spawn().await;
    idp.userinfo_answers("no-openid", ResponseTemplate::new(403)).await;

    assert_oauth_error(app.exchange_opaque("no-openid", &[]).await, 400, "invalid_request").await;
    assert_oauth_error(app.exchange_opaque("no-openid", &[]).await, 400, "invalid_request").await;
    assert_eq!(idp.userinfo_calls().await, 1, "negative-cached like any rejection");
}

#[tokio::test]
async fn a_misconfigured_upstream_shows_in_readiness_and_metrics_until_it_answers_again() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    let upstream = app.settings.upstreams.iter().find(|u| u.introspection_endpoint.is_some()).unwrap().name.clone();
    let readiness = async || {
        let response = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "still ready: other upstreams may be fine");
        response.json::<serde_json::Value>().await.unwrap()["checks"]["upstreams"].as_str().unwrap().to_owned()
    };
    let gauge = async || app.metrics().await.value("token_exchange_upstream_misconfigured", &[("upstream", &upstream)]);
    assert_eq!((readiness().await, gauge().await), ("ok".to_owned(), Some(0.0)));

    idp.introspection_answers("refused", ResponseTemplate::new(401)).await;
    assert_oauth_error(app.exchange_opaque("refused", &[]).await, 503, "temporarily_unavailable").await;
    assert_eq!((readiness().await, gauge().await), ("misconfigured".to_owned(), Some(1.0)));

    idp.introspection_active("welcome", app.now() + 3600).await;
    assert_eq!(app.exchange_opaque("welcome", &[]).await.status(), 200);
    assert_eq!((readiness().await, gauge().await), ("ok".to_owned(), Some(0.0)));
}

#[tokio::test]
async fn a_429_without_retry_after_waits_until_auth0s_rate_limit_reset() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("auth0", false, true)).spawn().await;
    let reset = (app.now() + 42).to_string();
    idp.userinfo_answers("limited", ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", reset.as_str()))
        .await;

    let response = app.exchange_opaque("limited", &[]).await;

    assert_eq!(response.headers()["retry-after"], "42");
    assert_oauth_error(response, 503, "temporarily_unavailable").await;
}
