//! Our signing keys: storage, publication (RFC 7517/7518, RFC 8037) and survival across restarts.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use token_exchange::keys::SigningAlgorithm;

use crate::helpers::*;

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

async fn minted_token(app: &TestApp, idp: &FakeIdp) -> String {
    let body: Value = app.exchange(&idp.token(app.now()), &[]).await.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_jwks_publishes_public_members_only_with_a_cache_lifetime() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.http.get(app.url(JWKS_PATH)).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert!(response.headers()["cache-control"].to_str().unwrap().starts_with("public, max-age="));
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(key["kty"].is_string() && key["kid"].is_string(), "RFC 7517 §4");
        assert_eq!(key["use"], "sig");
        assert!(key.get("key_ops").is_none(), "use and key_ops are not both used");
        for member in PRIVATE_MEMBERS {
            assert!(key.get(member).is_none(), "private member {member} published");
        }
    }
}

#[tokio::test]
async fn es256_tokens_carry_a_fixed_length_r_s_signature_and_full_length_coordinates() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let token = minted_token(&app, &idp).await;

    let signature = URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(signature.len(), 64, "RFC 7518 §3.4");
    let jwks = app.jwks().await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().len(), 32, "RFC 7518 §6.2.1.2");
    assert_eq!(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap().len(), 32, "RFC 7518 §6.2.1.3");
}

#[tokio::test]
async fn rs256_tokens_verify_and_the_modulus_has_no_leading_zero() {
    let idp = FakeIdp::start().await;
    let app = spawn_app_with(&idp, |s| s.tokens.algorithm = SigningAlgorithm::RS256).await;

    let token = minted_token(&app, &idp).await;

    app.verify_as_downstream(&token, "internal").await;
    let jwks = app.jwks().await;
    let modulus = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["n"].as_str().unwrap()).unwrap();
    assert_eq!(modulus.len(), 256, "2048-bit key, minimal octets (RFC 7518 §6.3.1.1)");
    assert_ne!(modulus[0], 0);
}

#[tokio::test]
async fn eddsa_tokens_verify_with_an_okp_key() {
    let idp = FakeIdp::start().await;
    let app = spawn_app_with(&idp, |s| s.tokens.algorithm = SigningAlgorithm::EdDSA).await;

    let token = minted_token(&app, &idp).await;

    app.verify_as_downstream(&token, "internal").await;
    let jwks = app.jwks().await;
    assert_eq!(jwks["keys"][0]["kty"], "OKP", "RFC 8037 §2");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

async fn assert_keys_survive_a_restart(database_url: String) {
    let idp = FakeIdp::start().await;
    let data = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&idp, &data);
    settings.storage.database_url = database_url;
    let first = spawn_with_settings(settings.clone(), data.clone()).await;
    let token = minted_token(&first, &idp).await;

    let second = spawn_with_settings(settings, data).await;

    assert_eq!(first.jwks().await, second.jwks().await);
    second.verify_as_downstream(&token, "internal").await;
}

#[tokio::test]
async fn keys_survive_a_restart_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    assert_keys_survive_a_restart(format!("sqlite://{}/keys.db", data.path().display())).await;
}

#[tokio::test]
async fn keys_survive_a_restart_on_postgres() {
    assert_keys_survive_a_restart(fresh_postgres_database().await).await;
}
