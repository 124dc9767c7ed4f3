//! Client authentication at the token endpoint (RFC 6749 §2.3, §5.2).

use serde_json::Value;

use crate::helpers::*;

fn exchange_form(subject: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE.to_owned()),
        ("subject_token", subject.to_owned()),
        ("subject_token_type", JWT.to_owned()),
    ]
}

async fn post(app: &TestApp, authorization: Option<String>, form: &[(&str, String)]) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_html_form::to_string(form).unwrap());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_request_without_client_authentication_is_invalid_client_with_a_basic_challenge() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = post(&app, None, &exchange_form(&idp.token(app.now()))).await;

    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic realm="));
    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_wrong_basic_secret_is_invalid_client_with_a_basic_challenge() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = post(&app, Some(basic(CLIENT_ID, "wrong")), &exchange_form(&idp.token(app.now()))).await;

    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = post(&app, Some(basic("nobody", CLIENT_SECRET)), &exchange_form(&idp.token(app.now()))).await;

    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn client_secret_post_is_accepted() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let mut form = exchange_form(&idp.token(app.now()));
    form.push(("client_id", CLIENT_ID.to_owned()));
    form.push(("client_secret", CLIENT_SECRET.to_owned()));

    let response = post(&app, None, &form).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["client_id"], CLIENT_ID);
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let idp = FakeIdp::start().await;
    let secret = "p:ss%w+rd é";
    let app = TestApp::builder(&idp).configure(|s| s.clients.push(client("svc:one", secret))).spawn().await;

    let response = post(&app, Some(basic("svc:one", secret)), &exchange_form(&idp.token(app.now()))).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn using_two_authentication_methods_at_once_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let mut form = exchange_form(&idp.token(app.now()));
    form.push(("client_secret", CLIENT_SECRET.to_owned()));

    let response = post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await;

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_client_secret_in_the_query_string_is_rejected() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let form = exchange_form(&idp.token(app.now()));

    let response = app
        .http
        .post(app.url(&format!("/token?client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_html_form::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();

    assert_oauth_error(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn repeated_failures_lock_the_client_out_with_429_and_retry_after() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 3).spawn().await;
    let form = exchange_form(&idp.token(app.now()));
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_eq!(post(&app, Some(basic(CLIENT_ID, guess)), &form).await.status(), 401);
    }

    let response = post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await;

    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_remembered_secret_still_rejects_a_different_secret() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let form = exchange_form(&idp.token(app.now()));
    assert_eq!(post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await.status(), 200);

    let response = post(&app, Some(basic(CLIENT_ID, "gateway-secreT")), &form).await;

    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_repeated_wrong_secret_is_not_verified_again_and_not_counted_again() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 2).spawn().await;
    let form = exchange_form(&idp.token(app.now()));
    for _ in 0..5 {
        assert_eq!(post(&app, Some(basic(CLIENT_ID, "same-guess")), &form).await.status(), 401);
    }

    assert_eq!(post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await.status(), 200);
}

#[tokio::test]
async fn a_client_that_proved_its_secret_is_not_locked_out_by_someone_elses_guesses() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 2).spawn().await;
    let form = exchange_form(&idp.token(app.now()));
    assert_eq!(post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await.status(), 200);
    for guess in ["guess-1", "guess-2", "guess-3"] {
        post(&app, Some(basic(CLIENT_ID, guess)), &form).await;
    }

    assert_eq!(post(&app, Some(basic(CLIENT_ID, CLIENT_SECRET)), &form).await.status(), 200);
}

#[tokio::test]
async fn an_overlong_client_id_is_invalid_client() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = post(&app, Some(basic(&"x".repeat(5000), "s")), &exchange_form(&idp.token(app.now()))).await;

    assert_oauth_error(response, 401, "invalid_client").await;
}
