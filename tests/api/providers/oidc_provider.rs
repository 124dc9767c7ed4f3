//! panva's oidc-provider as the upstream of opaque access tokens: RFC 7662 introspection,
//! OIDC userinfo, and RFC 7009 revocation at the provider followed once the cached verdict
//! expires. The server is `tests/providers/oidc-provider/server.js`, run by `scripts/test`.

use std::time::Duration;

use serde_json::{Value, json};
use token_exchange::config::UpstreamSettings;

use super::harness::{ProviderApp, assert_refused, provider_url, upstream_from_toml};

const UPSTREAM: &str = "oidc-provider";
/// The application users sign in to.
const APP: (&str, &str) = ("app", "app-secret");
/// token-exchange's client at the provider, for introspection.
const INTROSPECTOR: (&str, &str) = ("token-exchange", "introspector-secret");

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
        upstream_from_toml(&format!(
            r#"
            name = "{UPSTREAM}"
            issuer = "{issuer}"
            introspection_endpoint = "{issuer}/token/introspection"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            default_for_opaque = true
            {userinfo}
            "#,
            issuer = self.issuer,
            client_id = INTROSPECTOR.0,
            client_secret = INTROSPECTOR.1,
        ))
    }

    /// A user of the test's own, and the opaque access token the code flow would have given
    /// them at `app` (the server's test-only stand-in for a browser sign-in).
    async fn access_token(&self, scope: &str) -> (String, String) {
        let account = format!("user-{}", uuid::Uuid::new_v4().simple());
        let request = json!({"account": account, "client_id": APP.0, "scope": scope});
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
