//! Signed answers about opaque tokens: RFC 9701 introspection responses and OIDC signed
//! userinfo (Core §5.3.2), each opted into per upstream. An answer is taken only when it is
//! signed by the upstream's own key, names its issuer and is meant for our `client_id`; any
//! other answer means a misconfigured or tampered upstream: 503, and nothing remembered.

use serde_json::{Value, json};
use token_exchange::keys::SigningAlgorithm;
use wiremock::ResponseTemplate;

use crate::helpers::*;

/// RFC 7662 members of an active token.
fn active(sub: &str, exp: i64) -> Value {
    json!({"active": true, "sub": sub, "scope": "read", "exp": exp, "client_id": "spa"})
}

/// An app whose opaque upstream `opaque` answers introspection with RFC 9701 JWTs; its issuer.
async fn signed_introspection_app(idp: &FakeIdp) -> (TestApp, String) {
    let upstream = idp.signed_settings("opaque", true, false);
    let issuer = upstream.issuer.clone();
    (TestApp::builder(idp).with_opaque_upstream(upstream).spawn().await, issuer)
}

/// An app whose opaque upstream `oidc` answers userinfo with signed JWTs; its issuer.
async fn signed_userinfo_app(idp: &FakeIdp) -> (TestApp, String) {
    let upstream = idp.signed_settings("oidc", false, true);
    let issuer = upstream.issuer.clone();
    (TestApp::builder(idp).with_opaque_upstream(upstream).spawn().await, issuer)
}

async fn minted_subject(app: &TestApp, response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "the exchange succeeds");
    let body: Value = response.json().await.unwrap();
    app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await["sub"].clone()
}

async fn assert_untrusted_answer(response: reqwest::Response) {
    let body = assert_oauth_error(response, 503, "temporarily_unavailable").await;
    assert!(body["error_description"].as_str().unwrap().contains("misconfigured"), "{body}");
}

#[tokio::test]
async fn a_signed_introspection_answer_is_accepted() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let answer =
        idp.signed_introspection(&issuer, UPSTREAM_CLIENT_ID, app.now(), active("signed-user", app.now() + 600));
    idp.introspection_answers_signed("rfc9701", &answer).await;

    let response = app.exchange_opaque("rfc9701", &[]).await;

    assert_eq!(minted_subject(&app, response).await, "signed-user");
}

#[tokio::test]
async fn a_signed_introspection_answer_with_a_forged_signature_is_503_and_not_cached() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let forger = UpstreamKey::generate(SigningAlgorithm::RS256);
    let header = json!({"alg": "RS256", "typ": "token-introspection+jwt", "kid": idp.current_key().kid()});
    let claims = json!({"iss": issuer, "aud": UPSTREAM_CLIENT_ID, "iat": app.now(),
                        "token_introspection": active("forged-user", app.now() + 600)});
    idp.introspection_answers_signed("forged", &forger.sign_raw(&header, &claims)).await;

    assert_untrusted_answer(app.exchange_opaque("forged", &[]).await).await;
    assert_untrusted_answer(app.exchange_opaque("forged", &[]).await).await;

    assert_eq!(idp.introspections().await, 2, "the refused answer was not remembered");
}

#[tokio::test]
async fn a_signed_introspection_answer_for_another_client_is_503() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let answer = idp.signed_introspection(&issuer, "another-client", app.now(), active("u", app.now() + 600));
    idp.introspection_answers_signed("not-for-us", &answer).await;

    assert_untrusted_answer(app.exchange_opaque("not-for-us", &[]).await).await;
}

#[tokio::test]
async fn a_signed_introspection_answer_from_another_issuer_is_503() {
    let idp = FakeIdp::start().await;
    let (app, _) = signed_introspection_app(&idp).await;
    let answer = idp.signed_introspection(&idp.issuer(), UPSTREAM_CLIENT_ID, app.now(), active("u", app.now() + 600));
    idp.introspection_answers_signed("other-issuer", &answer).await;

    assert_untrusted_answer(app.exchange_opaque("other-issuer", &[]).await).await;
}

#[tokio::test]
async fn a_json_introspection_answer_where_a_signed_one_is_required_is_503() {
    let idp = FakeIdp::start().await;
    let (app, _) = signed_introspection_app(&idp).await;
    let plain = ResponseTemplate::new(200).set_body_json(active("u", app.now() + 600));
    idp.introspection_answers("plain-json", plain).await;

    assert_untrusted_answer(app.exchange_opaque("plain-json", &[]).await).await;
}

#[tokio::test]
async fn a_signed_jwt_without_the_introspection_typ_is_not_an_introspection_answer() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let claims = json!({"iss": issuer, "aud": UPSTREAM_CLIENT_ID, "iat": app.now(),
                        "token_introspection": active("u", app.now() + 600)});
    idp.introspection_answers_signed("typ-jwt", &idp.current_key().sign(&claims)).await;

    assert_untrusted_answer(app.exchange_opaque("typ-jwt", &[]).await).await;
}

#[tokio::test]
async fn a_signed_introspection_answer_issued_long_ago_is_503() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let answer = idp.signed_introspection(&issuer, UPSTREAM_CLIENT_ID, app.now() - 3600, active("u", app.now() + 600));
    idp.introspection_answers_signed("replayed", &answer).await;

    assert_untrusted_answer(app.exchange_opaque("replayed", &[]).await).await;
}

#[tokio::test]
async fn an_inactive_token_in_a_signed_introspection_answer_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_introspection_app(&idp).await;
    let answer = idp.signed_introspection(&issuer, UPSTREAM_CLIENT_ID, app.now(), json!({"active": false}));
    idp.introspection_answers_signed("inactive", &answer).await;

    assert_oauth_error(app.exchange_opaque("inactive", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_signed_userinfo_answer_is_accepted() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_userinfo_app(&idp).await;
    let answer = idp.signed_userinfo(&issuer, UPSTREAM_CLIENT_ID, app.now(), json!({"sub": "profile-user"}));
    idp.userinfo_answers_signed("signed-profile", &answer).await;

    let response = app.exchange_opaque("signed-profile", &[]).await;

    assert_eq!(minted_subject(&app, response).await, "profile-user");
}

#[tokio::test]
async fn a_signed_userinfo_answer_for_another_client_is_503() {
    let idp = FakeIdp::start().await;
    let (app, issuer) = signed_userinfo_app(&idp).await;
    let answer = idp.signed_userinfo(&issuer, "another-client", app.now(), json!({"sub": "profile-user"}));
    idp.userinfo_answers_signed("foreign-profile", &answer).await;

    assert_untrusted_answer(app.exchange_opaque("foreign-profile", &[]).await).await;
}

#[tokio::test]
async fn a_json_userinfo_answer_where_a_signed_one_is_required_is_503() {
    let idp = FakeIdp::start().await;
    let (app, _) = signed_userinfo_app(&idp).await;
    let plain = ResponseTemplate::new(200).set_body_json(json!({"sub": "profile-user"}));
    idp.userinfo_answers("plain-profile", plain).await;

    assert_untrusted_answer(app.exchange_opaque("plain-profile", &[]).await).await;
}

#[tokio::test]
async fn a_signed_userinfo_answer_is_refused_by_an_upstream_that_expects_json() {
    let idp = FakeIdp::start().await;
    let upstream = idp.opaque_settings("oidc", false, true);
    let issuer = upstream.issuer.clone();
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    let answer = idp.signed_userinfo(&issuer, UPSTREAM_CLIENT_ID, app.now(), json!({"sub": "profile-user"}));
    let signed = ResponseTemplate::new(200).set_body_raw(answer, "application/jwt");
    idp.userinfo_answers("unasked-jwt", signed).await;

    assert_untrusted_answer(app.exchange_opaque("unasked-jwt", &[]).await).await;
}
