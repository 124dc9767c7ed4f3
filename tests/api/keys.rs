//! Our signing keys: storage, publication (RFC 7517/7518, RFC 8037) and survival across restarts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use token_exchange::clock::UnixTime;
use token_exchange::config::{Settings, StorageSettings};
use token_exchange::keys::{KeyRing, KeyStore, SigningAlgorithm};

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
    let app = TestApp::builder(&idp).configure(|s| s.tokens.algorithm = SigningAlgorithm::RS256).spawn().await;

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
    let app = TestApp::builder(&idp).configure(|s| s.tokens.algorithm = SigningAlgorithm::EdDSA).spawn().await;

    let token = minted_token(&app, &idp).await;

    app.verify_as_downstream(&token, "internal").await;
    let jwks = app.jwks().await;
    assert_eq!(jwks["keys"][0]["kty"], "OKP", "RFC 8037 §2");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

/// A second app on the first one's database publishes the same keys and verifies its tokens.
async fn assert_keys_survive_a_restart(idp: &FakeIdp, first: TestAppBuilder) {
    let first = first.spawn().await;
    let token = minted_token(&first, idp).await;

    let second = TestApp::builder(idp).with_database(first.database()).spawn().await;

    assert_eq!(first.jwks().await, second.jwks().await);
    second.verify_as_downstream(&token, "internal").await;
}

#[tokio::test]
async fn keys_survive_a_restart_on_sqlite() {
    let idp = FakeIdp::start().await;
    assert_keys_survive_a_restart(&idp, TestApp::builder(&idp)).await;
}

#[tokio::test]
async fn keys_survive_a_restart_on_postgres() {
    let idp = FakeIdp::start().await;
    assert_keys_survive_a_restart(&idp, TestApp::builder(&idp).with_postgres()).await;
}

async fn key_store_of(app: &TestApp) -> Arc<dyn KeyStore> {
    let settings = StorageSettings { database_url: app.database_url().into(), max_connections: 1 };
    token_exchange::storage::Database::open(&settings).await.unwrap().key_store()
}

async fn kid_of_a_fresh_token(app: &TestApp, idp: &FakeIdp) -> String {
    let subject = idp.token_with(app.now(), serde_json::json!({"exp": app.now() + 3600}));
    let body: Value = app.exchange(&subject, &[]).await.json().await.unwrap();
    jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap().kid.unwrap()
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.jwks().await;
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the JWKS holds `count` keys: key maintenance runs in the background once the
/// clock has moved past its interval.
async fn until_published(app: &TestApp, count: usize) -> Vec<String> {
    eventually(&format!("the JWKS holds {count} keys"), async || {
        let kids = published_kids(app).await;
        (kids.len() == count).then_some(kids)
    })
    .await
}

/// Moves the app's clock by one key maintenance interval, which starts one maintenance run.
fn run_key_maintenance(app: &TestApp) {
    app.clock.advance(app.settings.keys.refresh_interval);
}

fn rotating(settings: &mut Settings) {
    settings.keys.refresh_interval = Duration::from_secs(1);
    settings.keys.publish_ahead = Duration::from_secs(600);
    settings.tokens.reuse_minted = false;
}

#[tokio::test]
async fn a_new_key_is_published_before_it_signs_and_the_old_one_stays_until_its_tokens_expire() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(rotating).spawn().await;
    let old_kid = kid_of_a_fresh_token(&app, &idp).await;
    let policy = app.settings.rotation_policy();

    let store = key_store_of(&app).await;
    let now = UnixTime::from_secs(app.now());
    let new = KeyRing::add_key(&*store, SigningAlgorithm::ES256, policy, now, false, None).await.unwrap().unwrap();

    run_key_maintenance(&app);
    let kids = until_published(&app, 2).await;
    assert!(kids.contains(&new.kid) && kids.contains(&old_kid), "published ahead of use");
    assert_eq!(kid_of_a_fresh_token(&app, &idp).await, old_kid, "not signing before publish_ahead");
    app.clock.advance(policy.publish_ahead);
    assert_eq!(kid_of_a_fresh_token(&app, &idp).await, new.kid, "signing once active");
    assert_eq!(published_kids(&app).await.len(), 2, "the old key verifies tokens still alive");
    app.clock.advance(policy.retire_after);
    assert_eq!(published_kids(&app).await, vec![new.kid], "retired once its tokens have expired");
}

#[tokio::test]
async fn replicas_rotate_automatically_and_agree_on_one_new_key() {
    let idp = FakeIdp::start().await;
    let configure = |s: &mut Settings| {
        rotating(s);
        s.keys.rotate_every = Some(Duration::from_secs(3600));
    };
    let first = TestApp::builder(&idp).configure(configure).spawn().await;
    let second = TestApp::builder(&idp).with_database(first.database()).configure(configure).spawn().await;
    assert_eq!(until_published(&first, 1).await, until_published(&second, 1).await);

    // The rotation is due publish_ahead (600 s) before the key has signed for rotate_every.
    first.clock.advance(Duration::from_secs(3000));
    second.clock.advance(Duration::from_secs(3000));

    let kids = until_published(&first, 2).await;
    assert_eq!(until_published(&second, 2).await, kids, "both replicas publish the same two keys");
}

#[test]
fn the_rotate_key_command_adds_a_key() {
    let data = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_token-exchange"))
            .arg("rotate-key")
            .env("TOKEN_EXCHANGE__STORAGE__DATABASE_URL", format!("sqlite://{}/cli.db", data.path().display()))
            .output()
            .unwrap()
    };

    let first = run();
    let second = run();

    assert!(first.status.success() && second.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let printed = String::from_utf8(second.stdout).unwrap();
    assert!(printed.starts_with("added ES256 key "), "{printed}");
    assert_ne!(first.stdout, printed.into_bytes());
}

#[tokio::test]
async fn metrics_report_an_active_signing_key_and_its_age() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    app.clock.advance(Duration::from_secs(90));

    let metrics = app.metrics().await;

    assert_eq!(metrics.value("token_exchange_signing_key_active", &[]), Some(1.0));
    assert_eq!(metrics.value("token_exchange_signing_key_age_seconds", &[]), Some(90.0));
    assert_eq!(metrics.value("token_exchange_published_keys", &[]), Some(1.0));
}
