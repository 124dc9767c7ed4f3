//! `private_key_jwt` client authentication (RFC 7523 §2.2, RFC 7521 §4.2, OIDC Core §9): a JWT
//! signed with the client's key, checked against its inline `jwks` or its `jwks_uri`, with
//! `iss` = `sub` = client_id, our issuer or the endpoint as `aud`, a short life, and a `jti`
//! that is accepted once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use token_exchange::config::ClientSettings;
use token_exchange::keys::{SigningAlgorithm, SigningKey};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SIGNER: &str = "signer";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn signer_settings(keys: Value) -> ClientSettings {
    let mut settings = json!({"client_id": SIGNER, "audiences": ["orders"], "scopes": ["read"]});
    merge(&mut settings, keys);
    serde_json::from_value(settings).unwrap()
}

/// An app with the usual secret client plus `signer`, whose keys `keys` describes.
async fn app_with_signer(idp: &FakeIdp, keys: Value) -> TestApp {
    TestApp::builder(idp).configure(|s| s.clients.push(signer_settings(keys))).spawn().await
}

fn inline(key: &UpstreamKey) -> Value {
    json!({"jwks": {"keys": [key.jwk()]}})
}

fn claims(app: &TestApp, jti: &str) -> Value {
    let now = app.now();
    json!({"iss": SIGNER, "sub": SIGNER, "aud": format!("{ISSUER}/token"), "iat": now, "exp": now + 60, "jti": jti})
}

fn with(mut claims: Value, changes: Value) -> Value {
    merge(&mut claims, changes);
    claims
}

fn exchange_form(subject: &str, assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE.to_owned()),
        ("subject_token", subject.to_owned()),
        ("subject_token_type", JWT.to_owned()),
        ("audience", "orders".to_owned()),
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", assertion.to_owned()),
    ]
}

async fn post(app: &TestApp, endpoint: &str, form: &[(&str, String)], basic_auth: bool) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(endpoint))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_html_form::to_string(form).unwrap());
    if basic_auth {
        request = request.header("Authorization", basic(CLIENT_ID, CLIENT_SECRET));
    }
    request.send().await.unwrap()
}

async fn exchange_with(app: &TestApp, idp: &FakeIdp, assertion: &str) -> reqwest::Response {
    post(app, "/token", &exchange_form(&idp.token(app.now()), assertion), false).await
}

async fn assert_issued(response: reqwest::Response) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
}

async fn assert_refused(response: reqwest::Response) -> Value {
    assert!(response.headers().get("www-authenticate").is_none(), "no HTTP scheme fits an assertion");
    assert_oauth_error(response, 401, "invalid_client").await
}

#[tokio::test]
async fn an_assertion_signed_with_an_inline_key_is_accepted() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    assert_issued(exchange_with(&app, &idp, &key.sign(&claims(&app, "first"))).await).await;
    // Our issuer is an accepted audience too, and so is an array naming it.
    let aud_issuer = with(claims(&app, "second"), json!({"aud": ISSUER}));
    assert_issued(exchange_with(&app, &idp, &key.sign(&aud_issuer)).await).await;
    let aud_array = with(claims(&app, "third"), json!({"aud": ["https://elsewhere.test", ISSUER]}));
    assert_issued(exchange_with(&app, &idp, &key.sign(&aud_array)).await).await;
}

#[tokio::test]
async fn rsa_and_eddsa_assertions_are_accepted() {
    let idp = FakeIdp::start().await;
    let rsa = UpstreamKey::generate(SigningAlgorithm::RS256);
    let ed = UpstreamKey::generate(SigningAlgorithm::EdDSA);
    let app = app_with_signer(&idp, json!({"jwks": {"keys": [rsa.jwk(), ed.jwk()]}})).await;

    assert_issued(exchange_with(&app, &idp, &rsa.sign(&claims(&app, "rsa"))).await).await;
    assert_issued(exchange_with(&app, &idp, &ed.sign(&claims(&app, "ed"))).await).await;
}

#[tokio::test]
async fn an_assertion_checked_against_the_clients_jwks_uri_is_accepted_and_new_keys_are_fetched() {
    let idp = FakeIdp::start().await;
    let old = UpstreamKey::generate(SigningAlgorithm::ES256);
    let jwks = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/client-jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [old.jwk()]})))
        .up_to_n_times(1)
        .mount(&jwks)
        .await;
    let app = app_with_signer(&idp, json!({"jwks_uri": format!("{}/client-jwks", jwks.uri())})).await;

    assert_issued(exchange_with(&app, &idp, &old.sign(&claims(&app, "one"))).await).await;

    // The client rotates: an unknown kid makes us refetch (after the cooldown).
    let new = UpstreamKey::generate(SigningAlgorithm::ES256);
    Mock::given(method("GET"))
        .and(path("/client-jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [old.jwk(), new.jwk()]})))
        .mount(&jwks)
        .await;
    app.clock.advance(std::time::Duration::from_secs(31));
    assert_issued(exchange_with(&app, &idp, &new.sign(&claims(&app, "two"))).await).await;
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    let assertion = key.sign(&claims(&app, "once"));
    assert_issued(exchange_with(&app, &idp, &assertion).await).await;
    let body = assert_refused(exchange_with(&app, &idp, &assertion).await).await;
    assert!(body["error_description"].as_str().unwrap().contains("jti"), "{body}");
    // A new assertion with the same jti is a replay too.
    let again = with(claims(&app, "once"), json!({"exp": app.now() + 90}));
    assert_refused(exchange_with(&app, &idp, &key.sign(&again)).await).await;
}

#[tokio::test]
async fn a_jti_replayed_at_another_replica_sharing_redis_is_refused() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let prefix = random_prefix();
    let replica = || {
        TestApp::builder(&idp).with_redis_prefix(&prefix).configure(|s| s.clients.push(signer_settings(inline(&key))))
    };
    let first = replica().spawn().await;
    let second = replica().spawn().await;

    let assertion = key.sign(&claims(&first, "shared"));
    assert_issued(exchange_with(&first, &idp, &assertion).await).await;
    assert_refused(exchange_with(&second, &idp, &assertion).await).await;
    // The replay key is a digest, never the jti itself.
    let keys = redis_keys(&format!("{prefix}:v1:claim:*")).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains("shared"), "{keys:?}");
}

#[tokio::test]
async fn a_wrong_audience_issuer_or_subject_is_refused() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    let cases = [
        json!({"aud": "https://elsewhere.test/token"}),
        json!({"aud": format!("{ISSUER}/revoke")}),
        json!({"aud": null}),
        json!({"iss": "someone-else"}),
        json!({"jti": null}),
    ];
    for (i, change) in cases.into_iter().enumerate() {
        let assertion = key.sign(&with(claims(&app, &format!("case-{i}")), change.clone()));
        let body = assert_refused(exchange_with(&app, &idp, &assertion).await).await;
        assert!(body["error_description"].is_string(), "{change}: {body}");
    }
    // A sub naming another client: verified with that client's keys, which it has none of.
    let other = key.sign(&with(claims(&app, "other"), json!({"iss": CLIENT_ID, "sub": CLIENT_ID})));
    assert_refused(exchange_with(&app, &idp, &other).await).await;
}

#[tokio::test]
async fn hmac_and_unsigned_assertions_are_refused() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;
    let payload = b64_json(&claims(&app, "hmac"));

    let hs256 = format!("{}.{payload}.{}", b64_json(&json!({"alg": "HS256", "typ": "JWT"})), "c2lnbmF0dXJl");
    assert_refused(exchange_with(&app, &idp, &hs256).await).await;
    let none = format!("{}.{payload}.", b64_json(&json!({"alg": "none", "typ": "JWT"})));
    assert_refused(exchange_with(&app, &idp, &none).await).await;
    // A signature by another key with this key's kid does not verify either.
    let impostor = UpstreamKey::generate(SigningAlgorithm::ES256);
    let forged = impostor.sign_raw(&json!({"alg": "ES256", "kid": key.kid()}), &claims(&app, "forged"));
    assert_refused(exchange_with(&app, &idp, &forged).await).await;
}

#[tokio::test]
async fn expired_and_too_long_lived_assertions_are_refused() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;
    let now = app.now();

    let expired = with(claims(&app, "expired"), json!({"iat": now - 120, "exp": now - 60}));
    let body = assert_refused(exchange_with(&app, &idp, &key.sign(&expired)).await).await;
    assert!(body["error_description"].as_str().unwrap().contains("expired"), "{body}");
    // Five minutes is the default limit, from iat or, without one, from now.
    let long = with(claims(&app, "long"), json!({"exp": now + 600}));
    assert_refused(exchange_with(&app, &idp, &key.sign(&long)).await).await;
    let long_without_iat = with(claims(&app, "long-no-iat"), json!({"iat": null, "exp": now + 600}));
    assert_refused(exchange_with(&app, &idp, &key.sign(&long_without_iat)).await).await;
    let future = with(claims(&app, "future"), json!({"iat": now + 120, "exp": now + 180}));
    assert_refused(exchange_with(&app, &idp, &key.sign(&future)).await).await;
    // Within the limit, with the leeway, it passes.
    let five_minutes = with(claims(&app, "five"), json!({"exp": now + 300}));
    assert_issued(exchange_with(&app, &idp, &key.sign(&five_minutes)).await).await;
}

#[tokio::test]
async fn a_client_may_allow_longer_lived_assertions_up_to_an_hour() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let mut keys = inline(&key);
    keys["assertion_max_lifetime"] = json!("1h");
    let app = app_with_signer(&idp, keys).await;
    let now = app.now();

    assert_issued(exchange_with(&app, &idp, &key.sign(&with(claims(&app, "hour"), json!({"exp": now + 3600})))).await)
        .await;
    let longer = with(claims(&app, "longer"), json!({"exp": now + 7200}));
    assert_refused(exchange_with(&app, &idp, &key.sign(&longer)).await).await;
}

#[tokio::test]
async fn an_assertion_with_basic_credentials_or_a_secret_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;
    let form = exchange_form(&idp.token(app.now()), &key.sign(&claims(&app, "both")));

    assert_oauth_error(post(&app, "/token", &form, true).await, 400, "invalid_request").await;
    let mut with_secret = form.clone();
    with_secret.push(("client_secret", "whatever".to_owned()));
    assert_oauth_error(post(&app, "/token", &with_secret, false).await, 400, "invalid_request").await;
    let mut without_type = form.clone();
    without_type.retain(|(name, _)| *name != "client_assertion_type");
    assert_oauth_error(post(&app, "/token", &without_type, false).await, 400, "invalid_request").await;
    let mut other_client_id = form;
    other_client_id.push(("client_id", CLIENT_ID.to_owned()));
    assert_oauth_error(post(&app, "/token", &other_client_id, false).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_client_is_held_to_its_one_method() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    // The secret client cannot use an assertion, nor the key client a secret.
    let as_secret_client = key.sign(&with(claims(&app, "x"), json!({"iss": CLIENT_ID, "sub": CLIENT_ID})));
    assert_refused(exchange_with(&app, &idp, &as_secret_client).await).await;
    let response =
        app.post_form_as("/token", SIGNER, "guess", &[("grant_type", TOKEN_EXCHANGE), ("subject_token", "t")]).await;
    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn an_assertion_for_the_revocation_endpoint_authenticates_at_revoke() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    let for_revoke = with(claims(&app, "revoke"), json!({"aud": format!("{ISSUER}/revoke")}));
    let form = vec![
        ("token", idp.token(app.now())),
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", key.sign(&for_revoke)),
    ];
    let response = post(&app, "/revoke", &form, false).await;
    assert_eq!(response.status(), 200);
    // The same jti, or an assertion for the token endpoint's URL, is refused there.
    assert_refused(post(&app, "/revoke", &form, false).await).await;
    let form = vec![
        ("token", idp.token(app.now())),
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", key.sign(&claims(&app, "token-aud"))),
    ];
    assert_refused(post(&app, "/revoke", &form, false).await).await;
}

#[tokio::test]
async fn the_metadata_advertises_private_key_jwt_and_its_algorithms_while_a_client_uses_it() {
    let idp = FakeIdp::start().await;
    let key = UpstreamKey::generate(SigningAlgorithm::ES256);
    let app = app_with_signer(&idp, inline(&key)).await;

    let document = metadata(&app).await;
    for endpoint in ["token_endpoint", "revocation_endpoint"] {
        let methods = document[format!("{endpoint}_auth_methods_supported")].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")), "{document}");
        let algorithms = document[format!("{endpoint}_auth_signing_alg_values_supported")].as_array().unwrap();
        for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
            assert!(algorithms.contains(&json!(alg)), "{document}");
        }
        assert!(!algorithms.iter().any(|a| a == "none" || a.as_str().unwrap().starts_with("HS")), "{document}");
    }

    // Without such a client, neither the method nor (RFC 8414 §3.2: no empty arrays) the list.
    let plain = metadata(&spawn_app(&idp).await).await;
    assert!(!plain["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("private_key_jwt")));
    assert!(plain.get("token_endpoint_auth_signing_alg_values_supported").is_none(), "{plain}");
}

async fn metadata(app: &TestApp) -> Value {
    app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap()
}

/// authlib's `PrivateKeyJWT`, configured as its documentation shows, against `/token`, twice
/// (a fresh `jti` each time). authlib's assertions live an hour, so this client allows an hour;
/// the script gives authlib the app's fixed clock in place of the wall clock.
#[tokio::test]
async fn authlibs_private_key_jwt_client_exchanges_a_token() {
    let python = std::env::var("TEST_PYTHON").expect("TEST_PYTHON names a python with authlib; scripts/test sets it");
    let idp = FakeIdp::start().await;
    let der = SigningKey::generate_pkcs8(SigningAlgorithm::RS256).unwrap();
    let key = UpstreamKey { key: SigningKey::from_pkcs8(SigningAlgorithm::RS256, &der).unwrap() };
    let mut keys = inline(&key);
    keys["assertion_max_lifetime"] = json!("1h");
    let app = app_with_signer(&idp, keys).await;

    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("client.pem");
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(&der));
    std::fs::write(&pem_path, pem).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/private_key_jwt_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(app.url("/token"))
        .arg(format!("{ISSUER}/token"))
        .arg(SIGNER)
        .arg(&pem_path)
        .arg(idp.token(app.now()))
        .arg(app.now().to_string())
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "authlib failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let token: Value = serde_json::from_str(stdout.trim()).unwrap();
    let claims = app.verify_as_downstream(token["access_token"].as_str().unwrap(), "orders").await;
    assert_eq!(claims["client_id"], SIGNER);
}
