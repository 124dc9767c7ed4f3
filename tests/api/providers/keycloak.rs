//! Keycloak 26 as the upstream: its full JWT access tokens verified offline against the
//! realm's JWKS, its lightweight ones introspected, its offline tokens refused, its
//! administrators' decisions (a disabled user, a new signing key) followed, its endpoints read
//! from the realm's discovery document.

use std::time::Duration;

use super::harness::{ProviderApp, assert_printed, assert_refused, upstream_from_toml};
use super::keycloak_server::{ALICE, APP, LIGHTWEIGHT_APP, Realm, UPSTREAM};
use crate::helpers::check_config_online;

#[tokio::test]
async fn a_full_keycloak_access_token_is_verified_offline_and_exchanged() {
    let realm = Realm::shared();
    let app = ProviderApp::spawn(vec![realm.jwt_upstream()], |_| {}).await;
    let signed_in = realm.sign_in(APP, ALICE, "openid email profile").await;
    let subject = signed_in["access_token"].as_str().unwrap();

    let claims = app.minted_claims(app.exchange_jwt(subject).await, "internal").await;

    let keycloak_claims = jwt_claims(subject);
    assert_eq!(claims["sub"], keycloak_claims["sub"], "the subject is Keycloak's user id");
    assert_eq!(claims["email"], "alice@example.com", "claims copied from the verified token");
    assert_eq!(app.upstream_calls(UPSTREAM, "jwks").await, 1.0, "the realm's keys, fetched once");
}

#[tokio::test]
async fn a_lightweight_keycloak_token_is_introspected_by_a_mixed_upstream() {
    let realm = Realm::shared();
    let app = ProviderApp::spawn(vec![realm.mixed_upstream()], |_| {}).await;
    let subject = realm.access_token(LIGHTWEIGHT_APP, ALICE).await;
    let lightweight = jwt_claims(&subject);
    assert!(lightweight.get("aud").is_none() && lightweight.get("sub").is_none(), "lightweight: {lightweight:?}");

    let claims = app.minted_claims(app.exchange_jwt(&subject).await, "internal").await;

    assert_eq!(claims["email"], "alice@example.com", "what only the introspection answer says");
    assert!(claims["sub"].as_str().is_some_and(|sub| !sub.is_empty()));
    assert_eq!(app.upstream_calls(UPSTREAM, "introspection").await, 1.0);
}

#[tokio::test]
async fn a_full_keycloak_token_is_verified_offline_by_a_mixed_upstream() {
    let realm = Realm::shared();
    let app = ProviderApp::spawn(vec![realm.mixed_upstream()], |_| {}).await;
    let subject = realm.access_token(APP, ALICE).await;

    let claims = app.minted_claims(app.exchange_jwt(&subject).await, "internal").await;

    assert_eq!(claims["sub"], jwt_claims(&subject)["sub"]);
    assert_eq!(app.upstream_calls(UPSTREAM, "introspection").await, 0.0, "a JWT with our aud is never introspected");
}

#[tokio::test]
async fn a_keycloak_offline_token_is_refused_offline_and_by_introspection() {
    let realm = Realm::shared();
    let signed_in = realm.sign_in(APP, ALICE, "openid offline_access").await;
    let offline_token = signed_in["refresh_token"].as_str().unwrap();
    assert_eq!(jwt_claims(offline_token)["typ"], "Offline");

    for upstream in [realm.jwt_upstream(), realm.introspection_upstream()] {
        let introspects = upstream.introspection_endpoint.is_some();
        let app = ProviderApp::spawn(vec![upstream], |_| {}).await;
        let why = format!("an offline token is not an access token (introspection: {introspects})");
        assert_refused(app.exchange_jwt(offline_token).await, &why).await;
    }
}

#[tokio::test]
async fn a_user_disabled_in_keycloak_is_refused_once_the_cached_verdict_expires() {
    let realm = Realm::shared();
    let (positive_ttl, negative_ttl) = (Duration::from_secs(60), Duration::from_secs(20));
    let app = ProviderApp::spawn(vec![realm.introspection_upstream()], |settings| {
        settings.cache.max_ttl = positive_ttl;
        settings.cache.negative_ttl = negative_ttl;
    })
    .await;
    let (name, password, id) = realm.create_user().await;
    let subject = realm.access_token(LIGHTWEIGHT_APP, (&name, &password)).await;
    app.minted_claims(app.exchange_jwt(&subject).await, "internal").await;

    realm.set_user_enabled(&id, false).await;
    app.minted_claims(app.exchange_jwt(&subject).await, "internal").await;
    app.advance(positive_ttl + Duration::from_secs(1));
    assert_refused(app.exchange_jwt(&subject).await, "the user is disabled once the verdict is asked again").await;

    realm.set_user_enabled(&id, true).await;
    assert_refused(app.exchange_jwt(&subject).await, "the refusal is remembered for negative_ttl").await;
    app.advance(negative_ttl + Duration::from_secs(1));
    app.minted_claims(app.exchange_jwt(&subject).await, "internal").await;
}

#[tokio::test]
async fn a_keycloak_realm_key_rotation_is_picked_up_through_the_jwks_refresh() {
    let realm = Realm::of_its_own().await;
    let upstream = realm.jwt_upstream();
    let cooldown = upstream.jwks_refetch_cooldown;
    let app = ProviderApp::spawn(vec![upstream], |_| {}).await;
    let before = realm.access_token(APP, ALICE).await;
    app.minted_claims(app.exchange_jwt(&before).await, "internal").await;

    realm.rotate_signing_key().await;
    let after = realm.access_token(APP, ALICE).await;
    assert_ne!(kid(&before), kid(&after), "Keycloak signs with the new key");
    app.advance(cooldown + Duration::from_secs(1));

    app.minted_claims(app.exchange_jwt(&after).await, "internal").await;
    assert_eq!(app.upstream_calls(UPSTREAM, "jwks").await, 2.0, "the unknown kid fetched the JWKS again");
    app.minted_claims(app.exchange_jwt(&before).await, "internal").await;
    realm.delete().await;
}

#[tokio::test]
async fn keycloaks_introspection_endpoint_and_jwks_are_discovered_from_the_realm() {
    let realm = Realm::shared();
    let app = ProviderApp::spawn(vec![upstream_from_toml(&realm.discovering_mixed_upstream_toml())], |_| {}).await;
    let full = realm.access_token(APP, ALICE).await;
    let lightweight = realm.access_token(LIGHTWEIGHT_APP, ALICE).await;

    app.minted_claims(app.exchange_jwt(&full).await, "internal").await;
    let claims = app.minted_claims(app.exchange_jwt(&lightweight).await, "internal").await;

    assert_eq!(claims["email"], "alice@example.com", "from the discovered introspection endpoint");
    assert_eq!(app.upstream_calls(UPSTREAM, "jwks").await, 1.0);
    assert_eq!(app.upstream_calls(UPSTREAM, "introspection").await, 1.0);
    // The offline half and the introspecting half of a mixed upstream share one copy.
    let discovered = app.upstream_calls(UPSTREAM, "discovery").await;
    assert_eq!(discovered, 1.0, "the realm's metadata read once");
    let another = realm.access_token(LIGHTWEIGHT_APP, ALICE).await;
    app.minted_claims(app.exchange_jwt(&another).await, "internal").await;
    assert_eq!(app.upstream_calls(UPSTREAM, "discovery").await, discovered, "kept for metadata_max_age");
}

#[tokio::test]
async fn check_config_online_prints_the_endpoints_discovered_in_the_keycloak_realm() {
    let realm = Realm::shared();

    let output = check_config_online(&realm.discovering_mixed_upstream_toml()).await;

    let issuer = realm.issuer();
    assert_printed(
        &output,
        &[
            format!("upstream \"{UPSTREAM}\": metadata at {issuer}/.well-known/openid-configuration"),
            format!("  jwks_uri: {} (discovered)", realm.endpoint("certs")),
            format!("  introspection_endpoint: {} (discovered)", realm.endpoint("token/introspect")),
            "configuration is valid; every upstream's provider agrees with it".to_owned(),
        ],
    );
}

/// The claims of a JWT, unverified: what the test knows the provider put in.
fn jwt_claims(token: &str) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}
