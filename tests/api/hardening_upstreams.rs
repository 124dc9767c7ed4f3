//! What an upstream may and may not make us believe: an issuer is the upstream's own, profile
//! answers carry no delegation, actor tokens obey the same bounds as subject tokens, a JOSE
//! header we do not understand is refused (RFC 7515 §4.1.11), an upstream's trouble stays
//! bounded, and a JWS is judged by the upstream its `iss` names or by none.

use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::{Value, json};
use token_exchange::keys::SigningAlgorithm;
use wiremock::ResponseTemplate;

use crate::helpers::*;

/// Exchanges `subject` with `actor` as its actor token of type `actor_type`.
async fn exchange_with_actor(
    app: &TestApp,
    subject: &str,
    subject_type: &str,
    actor: &str,
    actor_type: &str,
) -> reqwest::Response {
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", subject_type),
        ("actor_token", actor),
        ("actor_token_type", actor_type),
    ];
    app.post_token(&form).await
}

/// The claims of the token a successful exchange minted, verified as a downstream would.
async fn minted_claims(app: &TestApp, response: reqwest::Response) -> serde_json::Map<String, Value> {
    assert_eq!(response.status(), 200, "the exchange succeeds");
    let body: Value = response.json().await.unwrap();
    app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await
}

/// `Retry-After` in seconds, when the response carries one.
fn assert_description_starts_with(body: &Value, prefix: &str) {
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(prefix), "error_description {description:?} should start with {prefix:?}");
}

// Finding 1: an upstream speaks for its own issuer only.

#[tokio::test]
async fn an_introspection_answer_naming_another_upstreams_issuer_is_refused() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    let borrowed = json!({"active": true, "sub": "user-123", "iss": idp.issuer(), "exp": app.now() + 600});
    idp.introspection_answers("borrowed-iss", ResponseTemplate::new(200).set_body_json(borrowed)).await;

    let response = app.exchange_opaque("borrowed-iss", &[]).await;

    let body = assert_oauth_error(response, 400, "invalid_request").await;
    assert_description_starts_with(&body, "subject_token is invalid");
}

#[tokio::test]
async fn an_opaque_actor_cannot_borrow_the_issuer_that_may_act_names() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    // The subject allows exactly one party of the JWT upstream to act for it...
    let subject = idp.token_with(app.now(), json!({"may_act": {"sub": "trusted-service", "iss": idp.issuer()}}));
    // ...and the opaque upstream claims its token belongs to that very party.
    let impostor = json!({"active": true, "sub": "trusted-service", "iss": idp.issuer(), "exp": app.now() + 600});
    idp.introspection_answers("impostor-actor", ResponseTemplate::new(200).set_body_json(impostor)).await;

    let response = exchange_with_actor(&app, &subject, JWT, "impostor-actor", ACCESS_TOKEN).await;

    let body = assert_oauth_error(response, 400, "invalid_request").await;
    assert_description_starts_with(&body, "actor_token is invalid");
}

#[tokio::test]
async fn an_introspected_actor_is_named_by_its_upstreams_configured_issuer() {
    let idp = FakeIdp::start().await;
    let upstream = idp.introspection_upstream();
    let opaque_issuer = upstream.issuer.clone();
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    let silent = json!({"active": true, "sub": "batch-service", "exp": app.now() + 600});
    idp.introspection_answers("silent-actor", ResponseTemplate::new(200).set_body_json(silent)).await;
    let own = json!({"active": true, "sub": "batch-service", "iss": opaque_issuer, "exp": app.now() + 600});
    idp.introspection_answers("own-actor", ResponseTemplate::new(200).set_body_json(own)).await;

    for actor in ["silent-actor", "own-actor"] {
        let response = exchange_with_actor(&app, &idp.token(app.now()), JWT, actor, ACCESS_TOKEN).await;
        let claims = minted_claims(&app, response).await;
        assert_eq!(claims["act"], json!({"sub": "batch-service", "iss": opaque_issuer}), "actor {actor}");
    }
}

#[tokio::test]
async fn may_act_in_a_userinfo_answer_does_not_constrain_the_actor() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("auth0", false, true)).spawn().await;
    let profile = json!({"sub": "auth0|1", "may_act": {"sub": "someone-else"}});
    idp.userinfo_answers("ui-subject", ResponseTemplate::new(200).set_body_json(profile)).await;
    let actor = idp.token_with(app.now(), json!({"sub": "batch-service"}));

    let response = exchange_with_actor(&app, "ui-subject", ACCESS_TOKEN, &actor, JWT).await;

    let claims = minted_claims(&app, response).await;
    assert_eq!(claims["sub"], "auth0|1");
    assert_eq!(claims["act"], json!({"sub": "batch-service", "iss": idp.issuer()}));
}

#[tokio::test]
async fn act_in_a_userinfo_answer_never_reaches_the_minted_token() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.opaque_settings("auth0", false, true)).spawn().await;
    let profile = json!({"sub": "auth0|2", "act": {"sub": "injected-actor"}});
    idp.userinfo_answers("ui-acted", ResponseTemplate::new(200).set_body_json(profile)).await;

    let claims = minted_claims(&app, app.exchange_opaque("ui-acted", &[]).await).await;

    assert_eq!(claims["sub"], "auth0|2");
    assert!(claims.get("act").is_none(), "no act from a profile: {claims:?}");
}

// Finding 2: an actor token is bound like a subject token.

#[tokio::test]
async fn an_actor_token_from_an_upstream_the_client_is_not_bound_to_is_unauthorized_client() {
    let idp = FakeIdp::start().await;
    let other = FakeIdp::start().await;
    let mut second = other.upstream_settings();
    second.name = "other".into();
    let app = TestApp::builder(&idp)
        .configure(|s| {
            s.upstreams.push(second);
            s.clients[0].upstream = Some("idp".into());
        })
        .spawn()
        .await;
    let own_actor = idp.token_with(app.now(), json!({"sub": "batch-service"}));
    let foreign_actor = other.token_with(app.now(), json!({"sub": "batch-service"}));

    let own = exchange_with_actor(&app, &idp.token(app.now()), JWT, &own_actor, JWT).await;
    let foreign = exchange_with_actor(&app, &idp.token(app.now()), JWT, &foreign_actor, JWT).await;

    assert_eq!(own.status(), 200, "an actor of the bound upstream is fine");
    assert_oauth_error(foreign, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn the_minted_token_never_outlives_the_actor_token() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token_with(app.now(), json!({"exp": app.now() + 3600}));
    let actor_expires_at = app.now() + 60;
    let actor = idp.token_with(app.now(), json!({"sub": "batch-service", "exp": actor_expires_at}));

    let response = exchange_with_actor(&app, &subject, JWT, &actor, JWT).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp <= actor_expires_at, "minted exp {exp} is after the actor's exp {actor_expires_at}");
    assert_eq!(body["expires_in"], 60);
}

// Finding 3: an unknown kid inside the JWKS refetch cooldown is no verdict.

#[tokio::test]
async fn an_unknown_kid_inside_the_refetch_cooldown_is_neither_remembered_nor_shared_between_replicas() {
    let mut idp = FakeIdp::start().await;
    // Long enough that a rejection, had one been remembered, would outlast the cooldown.
    let remember_rejections =
        |s: &mut token_exchange::config::Settings| s.cache.negative_ttl = Duration::from_secs(300);
    let first = TestApp::builder(&idp).with_redis().configure(remember_rejections).spawn().await;
    let second =
        TestApp::builder(&idp).with_redis_prefix(first.redis_prefix()).configure(remember_rejections).spawn().await;
    // Both replicas fetch the JWKS now, which starts their refetch cooldown.
    let before_rotation = idp.token(first.now());
    assert_eq!(first.exchange(&before_rotation, &[]).await.status(), 200);
    assert_eq!(second.exchange(&idp.token_with(second.now(), json!({"sub": "user-b"})), &[]).await.status(), 200);

    idp.rotate(SigningAlgorithm::ES256).await;
    let rotated = idp.token(first.now());

    for replica in [&first, &second] {
        let response = replica.exchange(&rotated, &[]).await;
        let retry_after = retry_after(&response);
        assert_oauth_error(response, 503, "temporarily_unavailable").await;
        assert!(retry_after.is_some_and(|s| (1..=30).contains(&s)), "Retry-After {retry_after:?}: the next fetch");
    }
    let mut redis = redis_connection().await;
    let entry = |token: &str| redis_entry_key(first.redis_prefix(), "idp", token);
    assert!(redis.exists::<_, bool>(entry(&before_rotation)).await.unwrap(), "verdicts are shared under this key");
    assert!(!redis.exists::<_, bool>(entry(&rotated)).await.unwrap(), "nothing was shared about the new kid");

    second.clock.advance(Duration::from_secs(31));
    assert_eq!(second.exchange(&rotated, &[]).await.status(), 200, "past its cooldown the replica refetches");
    assert_eq!(idp.jwks_fetches().await, 1, "one fetch since the rotation");
    first.clock.advance(Duration::from_secs(31));
    assert_eq!(first.exchange(&rotated, &[]).await.status(), 200, "and the replica that saw the 503 is not stuck");
}

// Finding 4: RFC 7515 §4.1.11.

#[tokio::test]
async fn a_jws_naming_a_critical_header_parameter_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let key = idp.current_key();
    let claims = idp.claims(app.now());
    let plain = json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "exp": app.now() + 3600});
    let critical = json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "crit": ["exp"], "exp": app.now() + 3600});

    let accepted = app.exchange(&key.sign_raw(&plain, &claims), &[]).await;
    let refused = app.exchange(&key.sign_raw(&critical, &claims), &[]).await;

    assert_eq!(accepted.status(), 200, "an extra header parameter alone is harmless");
    assert_oauth_error(refused, 400, "invalid_request").await;
}

// Findings 5 and 6: an upstream's trouble is bounded.

#[tokio::test]
async fn an_upstreams_huge_retry_after_is_capped_at_five_minutes() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    idp.introspection_answers("busy", ResponseTemplate::new(503).insert_header("Retry-After", "99999999")).await;

    let response = app.exchange_opaque("busy", &[]).await;

    let retry_after = retry_after(&response);
    assert_oauth_error(response, 503, "temporarily_unavailable").await;
    assert!(retry_after.is_some_and(|s| (1..=300).contains(&s)), "Retry-After {retry_after:?} is not within 300s");
}

#[tokio::test]
async fn an_introspection_answer_larger_than_the_response_cap_is_temporarily_unavailable() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| s.upstream_http.max_response_bytes = 256)
        .spawn()
        .await;
    let bloated = json!({"active": true, "sub": "u", "exp": app.now() + 600, "padding": "x".repeat(4096)});
    idp.introspection_answers("bloated", ResponseTemplate::new(200).set_body_json(bloated)).await;

    let response = app.exchange_opaque("bloated", &[]).await;

    assert_oauth_error(response, 503, "temporarily_unavailable").await;
    assert_eq!(idp.introspections().await, 1);
}

// Finding 7: a JWS goes to the upstream its `iss` names, or to none.

/// An app whose default opaque upstream would vouch for any token it were shown.
async fn app_with_a_credulous_introspection(idp: &FakeIdp) -> TestApp {
    let app = TestApp::builder(idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    let active = json!({"active": true, "sub": "opaque-user", "exp": app.now() + 600});
    idp.introspection_answers_all(ResponseTemplate::new(200).set_body_json(active)).await;
    app
}

async fn assert_refused_without_introspection(app: &TestApp, idp: &FakeIdp, token: &str) {
    let response = app.exchange_opaque(token, &[]).await;

    assert_oauth_error(response, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 0, "the token was shown to the opaque upstream");
}

#[tokio::test]
async fn a_jws_from_an_unknown_issuer_is_never_sent_to_the_default_introspection() {
    let idp = FakeIdp::start().await;
    let app = app_with_a_credulous_introspection(&idp).await;
    let foreign = idp.token_with(app.now(), json!({"iss": "https://other-provider.example"}));

    assert_refused_without_introspection(&app, &idp, &foreign).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_jws_is_never_sent_to_the_default_introspection() {
    let idp = FakeIdp::start().await;
    let app = app_with_a_credulous_introspection(&idp).await;
    let header = json!({"alg": "none", "typ": "JWT"});
    let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&idp.claims(app.now())));

    assert_refused_without_introspection(&app, &idp, &unsigned).await;
}

#[tokio::test]
async fn a_jws_whose_iss_differs_by_a_trailing_slash_is_never_sent_to_the_default_introspection() {
    let idp = FakeIdp::start().await;
    let app = app_with_a_credulous_introspection(&idp).await;
    let almost = idp.token_with(app.now(), json!({"iss": format!("{}/", idp.issuer())}));

    assert_refused_without_introspection(&app, &idp, &almost).await;
}
