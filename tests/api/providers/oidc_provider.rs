//! panva's oidc-provider as the upstream of opaque access tokens: RFC 7662 introspection,
//! OIDC userinfo, RFC 7009 revocation at the provider followed once the cached verdict
//! expires, signed answers (RFC 9701 introspection, signed userinfo) verified with its JWKS,
//! and endpoints read from its discovery document. The server is
//! `tests/providers/oidc-provider/server.js`, run by `scripts/test`.

use std::time::Duration;

use serde_json::{Value, json};
use token_exchange::config::UpstreamSettings;

use super::harness::{ProviderApp, assert_printed, assert_refused, provider_url, upstream_from_toml};
use crate::helpers::check_config_online;

const UPSTREAM: &str = "oidc-provider";
/// The application users sign in to.
const APP: (&str, &str) = ("app", "app-secret");
/// token-exchange's client at the provider, for introspection.
const INTROSPECTOR: (&str, &str) = ("token-exchange", "introspector-secret");
/// token-exchange's client that registered RFC 9701 signed introspection answers: their `aud`.
const SIGNED_INTROSPECTOR: (&str, &str) = ("token-exchange-jwt", "introspector-jwt-secret");
/// An application that registered signed userinfo: its users' userinfo JWTs name it in `aud`.
const SIGNED_USERINFO_APP: &str = "signed-userinfo-app";

/// The oidc-provider of this test run and the clients of `server.js`.
struct OidcProvider {
    issuer: String,
    http: reqwest::Client,
}

impl OidcProvider {
    fn running() -> Self {
        Self { issuer: provider_url("OIDC_PROVIDER_URL", "oidc-provider"), http: reqwest::Client::new() }
    }

    /// The default upstream for opaque tokens, introspecting each one, and asking userinfo too
    /// when `with_userinfo`.
    fn upstream(&self, with_userinfo: bool) -> UpstreamSettings {
        let userinfo =
            if with_userinfo { format!(r#"userinfo_endpoint = "{}/me""#, self.issuer) } else { String::new() };
        upstream_from_toml(&self.upstream_toml(&format!(
            r#"
            introspection_endpoint = "{issuer}/token/introspection"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            {userinfo}
            "#,
            issuer = self.issuer,
            client_id = INTROSPECTOR.0,
            client_secret = INTROSPECTOR.1,
        )))
    }

    /// The `[[upstreams]]` entry of the default upstream for opaque tokens, with `settings`.
    fn upstream_toml(&self, settings: &str) -> String {
        format!("name = \"{UPSTREAM}\"\nissuer = \"{}\"\ndefault_for_opaque = true\n{settings}", self.issuer)
    }

    /// Introspection asked for RFC 9701 signed answers, its endpoint and the JWKS written out.
    fn signed_introspection_upstream(&self) -> UpstreamSettings {
        upstream_from_toml(&self.upstream_toml(&format!(
            r#"
            introspection_endpoint = "{issuer}/token/introspection"
            introspection_format = "jwt"
            jwks_uri = "{issuer}/jwks"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            "#,
            issuer = self.issuer,
            client_id = SIGNED_INTROSPECTOR.0,
            client_secret = SIGNED_INTROSPECTOR.1,
        )))
    }

    /// Userinfo alone, asked for signed answers meant for the application `audience`.
    fn signed_userinfo_upstream(&self, audience: &str) -> UpstreamSettings {
        upstream_from_toml(&self.upstream_toml(&format!(
            r#"
            userinfo_endpoint = "{issuer}/me"
            userinfo_format = "jwt"
            jwks_uri = "{issuer}/jwks"
            client_id = "{audience}"
            "#,
            issuer = self.issuer,
        )))
    }

    /// Signed introspection and plain userinfo, every endpoint and the JWKS left to discovery.
    fn discovering_upstream_toml(&self) -> String {
        self.upstream_toml(&format!(
            r#"
            introspection_endpoint = "discover"
            introspection_format = "jwt"
            userinfo_endpoint = "discover"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            "#,
            client_id = SIGNED_INTROSPECTOR.0,
            client_secret = SIGNED_INTROSPECTOR.1,
        ))
    }

    /// A user of the test's own, and the opaque access token the code flow would have given
    /// them at `app` (the server's test-only stand-in for a browser sign-in).
    async fn access_token(&self, scope: &str) -> (String, String) {
        self.access_token_of(APP.0, scope).await
    }

    /// Like [`OidcProvider::access_token`], for a user of the application `client_id`.
    async fn access_token_of(&self, client_id: &str, scope: &str) -> (String, String) {
        let account = format!("user-{}", uuid::Uuid::new_v4().simple());
        let request = json!({"account": account, "client_id": client_id, "scope": scope});
        let response =
            self.http.post(format!("{}/test-only/access-tokens", self.issuer)).json(&request).send().await.unwrap();
        assert_eq!(response.status(), 200, "a token minted for {account}");
        let body: Value = response.json().await.unwrap();
        (account, body["access_token"].as_str().unwrap().to_owned())
    }

    /// RFC 7009: the application revokes its user's token.
    async fn revoke(&self, token: &str) {
        let response = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth(APP.0, Some(APP.1))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "revoked");
    }
}

#[tokio::test]
async fn an_opaque_oidc_provider_token_is_introspected_and_exchanged() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.upstream(false)], |_| {}).await;
    let (account, subject) = provider.access_token("openid read write").await;

    let response = app.exchange_access_token(&subject, &[("scope", "read")]).await;

    let claims = app.minted_claims(response, "internal").await;
    assert_eq!(claims["sub"], account.as_str());
    assert_eq!(claims["scope"], "read", "within the scope the provider granted");
    assert_eq!(app.upstream_calls(UPSTREAM, "introspection").await, 1.0);
}

#[tokio::test]
async fn userinfo_adds_the_profile_of_an_oidc_provider_user() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.upstream(true)], |_| {}).await;
    let (account, subject) = provider.access_token("openid email profile read").await;

    let claims = app.minted_claims(app.exchange_access_token(&subject, &[]).await, "internal").await;

    assert_eq!(claims["sub"], account.as_str());
    assert_eq!(claims["email"], format!("{account}@example.com"), "from userinfo: introspection has no email");
    assert_eq!(claims["name"], format!("User {account}"));
}

#[tokio::test]
async fn an_unknown_opaque_token_is_refused_by_oidc_provider() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.upstream(false)], |_| {}).await;

    assert_refused(app.exchange_access_token("no-such-token-at-the-provider", &[]).await, "inactive").await;
}

#[tokio::test]
async fn a_token_revoked_at_oidc_provider_is_refused_once_the_cached_verdict_expires() {
    let provider = OidcProvider::running();
    let positive_ttl = Duration::from_secs(60);
    let app =
        ProviderApp::spawn(vec![provider.upstream(false)], |settings| settings.cache.max_ttl = positive_ttl).await;
    let (_, subject) = provider.access_token("openid read").await;
    app.minted_claims(app.exchange_access_token(&subject, &[]).await, "internal").await;

    provider.revoke(&subject).await;
    app.advance(positive_ttl + Duration::from_secs(1));

    assert_refused(app.exchange_access_token(&subject, &[]).await, "revoked at the provider").await;
}

#[tokio::test]
async fn an_rfc_9701_signed_introspection_answer_of_oidc_provider_is_verified_and_exchanged() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.signed_introspection_upstream()], |_| {}).await;
    let (account, subject) = provider.access_token("openid read write").await;

    let claims = app.minted_claims(app.exchange_access_token(&subject, &[("scope", "write")]).await, "internal").await;

    assert_eq!(claims["sub"], account.as_str(), "from token_introspection, once the JWS verified");
    assert_eq!(claims["scope"], "write");
    assert_eq!(app.upstream_calls(UPSTREAM, "introspection").await, 1.0);
    assert_eq!(app.upstream_calls(UPSTREAM, "jwks").await, 1.0, "the provider's keys verify its answer");
}

#[tokio::test]
async fn a_signed_userinfo_answer_of_oidc_provider_is_verified_and_exchanged() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.signed_userinfo_upstream(SIGNED_USERINFO_APP)], |_| {}).await;
    let (account, subject) = provider.access_token_of(SIGNED_USERINFO_APP, "openid email profile").await;

    let claims = app.minted_claims(app.exchange_access_token(&subject, &[]).await, "internal").await;

    assert_eq!(claims["sub"], account.as_str());
    assert_eq!(claims["email"], format!("{account}@example.com"), "from the verified userinfo JWT");
    assert_eq!(app.upstream_calls(UPSTREAM, "userinfo").await, 1.0);
}

#[tokio::test]
async fn a_signed_userinfo_answer_meant_for_another_application_is_503() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![provider.signed_userinfo_upstream(SIGNED_USERINFO_APP)], |_| {}).await;
    // oidc-provider signs userinfo for the client the token was issued to: here not ours.
    let (_, subject) = provider.access_token_of(SIGNED_INTROSPECTOR.0, "openid email").await;

    let response = app.exchange_access_token(&subject, &[]).await;

    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
}

#[tokio::test]
async fn endpoints_written_discover_are_read_from_oidc_providers_metadata_and_used() {
    let provider = OidcProvider::running();
    let app = ProviderApp::spawn(vec![upstream_from_toml(&provider.discovering_upstream_toml())], |_| {}).await;
    let (account, subject) = provider.access_token("openid email profile read").await;

    let claims = app.minted_claims(app.exchange_access_token(&subject, &[]).await, "internal").await;

    assert_eq!(claims["sub"], account.as_str());
    assert_eq!(claims["email"], format!("{account}@example.com"), "from the discovered userinfo endpoint");
    for kind in ["discovery", "jwks", "introspection", "userinfo"] {
        assert_eq!(app.upstream_calls(UPSTREAM, kind).await, 1.0, "{kind} calls");
    }
}

#[tokio::test]
async fn check_config_online_prints_the_endpoints_discovered_at_oidc_provider() {
    let provider = OidcProvider::running();

    let output = check_config_online(&provider.discovering_upstream_toml()).await;

    let issuer = &provider.issuer;
    assert_printed(
        &output,
        &[
            format!("upstream \"{UPSTREAM}\": metadata at {issuer}/.well-known/openid-configuration"),
            format!("  jwks_uri: {issuer}/jwks (discovered)"),
            format!("  introspection_endpoint: {issuer}/token/introspection (discovered)"),
            format!("  userinfo_endpoint: {issuer}/me (discovered)"),
            "  introspection_signing_alg_values_supported: RS256".to_owned(),
            "configuration is valid; every upstream's provider agrees with it".to_owned(),
        ],
    );
}
