//! A wiremock identity provider: it publishes a JWKS, signs subject tokens and answers
//! introspection and userinfo calls the way a test tells it to.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use token_exchange::config::UpstreamSettings;
use token_exchange::keys::{SigningAlgorithm, SigningKey};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{
    INTROSPECT_PATH, JWKS_PATH, UPSTREAM_AUDIENCE, UPSTREAM_CLIENT_ID, UPSTREAM_CLIENT_SECRET, USERINFO_PATH, b64_json,
    init_test_log, merge,
};

/// A signing key of the fake identity provider.
pub struct UpstreamKey {
    pub key: SigningKey,
}

impl UpstreamKey {
    pub fn generate(alg: SigningAlgorithm) -> Self {
        let der = SigningKey::generate_pkcs8(alg).unwrap();
        Self { key: SigningKey::from_pkcs8(alg, &der).unwrap() }
    }

    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn jwk(&self) -> Value {
        serde_json::to_value(self.key.public_jwk()).unwrap()
    }

    /// Signs `claims` under `header` exactly as given.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = self.key.sign(signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({"alg": self.key.algorithm().as_str(), "typ": "JWT", "kid": self.kid()}), claims)
    }
}

/// A wiremock identity provider that publishes a JWKS and signs subject tokens.
pub struct FakeIdp {
    pub server: MockServer,
    pub keys: Vec<UpstreamKey>,
}

impl FakeIdp {
    pub async fn start() -> Self {
        init_test_log();
        let idp =
            Self { server: MockServer::start().await, keys: vec![UpstreamKey::generate(SigningAlgorithm::RS256)] };
        idp.publish().await;
        idp
    }

    pub fn issuer(&self) -> String {
        self.server.uri()
    }

    pub fn current_key(&self) -> &UpstreamKey {
        self.keys.last().unwrap()
    }

    /// (Re)mounts the JWKS endpoint with the current keys.
    pub async fn publish(&self) {
        self.server.reset().await;
        let keys: Vec<Value> = self.keys.iter().map(UpstreamKey::jwk).collect();
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys })))
            .mount(&self.server)
            .await;
    }

    /// Adds a new key and publishes it alongside the old ones, as an IdP rotating keys does.
    pub async fn rotate(&mut self, alg: SigningAlgorithm) {
        self.keys.push(UpstreamKey::generate(alg));
        self.publish().await;
    }

    pub async fn jwks_fetches(&self) -> usize {
        self.requests_to(JWKS_PATH).await
    }

    pub async fn requests_to(&self, wanted: &str) -> usize {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests.iter().filter(|r| r.url.path() == wanted).count()
    }

    /// This provider as the JWT upstream `idp`.
    pub fn upstream_settings(&self) -> UpstreamSettings {
        let mut settings: UpstreamSettings = serde_json::from_value(json!({
            "name": "idp",
            "issuer": self.issuer(),
            "audiences": [UPSTREAM_AUDIENCE],
            "algorithms": ["RS256", "ES256", "EdDSA"],
        }))
        .unwrap();
        settings.jwks_uri = Some(format!("{}{JWKS_PATH}", self.issuer()).parse().unwrap());
        settings
    }

    /// Claims of a valid subject token at `now`.
    pub fn claims(&self, now: i64) -> Value {
        json!({
            "iss": self.issuer(),
            "sub": "user-123",
            "aud": UPSTREAM_AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "scope": "read write admin",
            "email": "user@example.com",
            "name": "Ursula User",
            "phone_number": "+1 555 0100",
            "acr": "urn:mace:incommon:iap:silver",
            "auth_time": now - 60,
        })
    }

    pub fn token(&self, now: i64) -> String {
        self.current_key().sign(&self.claims(now))
    }

    pub fn token_with(&self, now: i64, changes: Value) -> String {
        let mut claims = self.claims(now);
        merge(&mut claims, changes);
        self.current_key().sign(&claims)
    }

    /// An upstream for opaque tokens on this server, the default for clients bound to none.
    pub fn opaque_settings(&self, name: &str, introspection: bool, userinfo: bool) -> UpstreamSettings {
        let mut settings: UpstreamSettings = serde_json::from_value(json!({
            "name": name,
            "issuer": format!("{}/{name}", self.issuer()),
            "client_id": UPSTREAM_CLIENT_ID,
            "client_secret": UPSTREAM_CLIENT_SECRET,
            "default_for_opaque": true,
        }))
        .unwrap();
        if introspection {
            settings.introspection_endpoint = Some(format!("{}{INTROSPECT_PATH}", self.issuer()).parse().unwrap());
        }
        if userinfo {
            settings.userinfo_endpoint = Some(format!("{}{USERINFO_PATH}", self.issuer()).parse().unwrap());
        }
        settings
    }

    /// The usual opaque upstream: `opaque`, validating tokens by introspection only.
    pub fn introspection_upstream(&self) -> UpstreamSettings {
        self.opaque_settings("opaque", true, false)
    }

    /// Introspection answers `response` for `token` (and only for it).
    pub async fn introspection_answers(&self, token: &str, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(INTROSPECT_PATH))
            .and(body_string_contains(format!("token={token}&")))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }

    pub async fn introspection_active(&self, token: &str, exp: i64) {
        let body = json!({"active": true, "sub": "opaque-user", "scope": "read write", "exp": exp, "client_id": "spa",
                          "email": "opaque@example.com"});
        self.introspection_answers(token, ResponseTemplate::new(200).set_body_json(body)).await;
    }

    /// Userinfo answers `response` for `token` presented as a Bearer token.
    pub async fn userinfo_answers(&self, token: &str, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(USERINFO_PATH))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }

    pub async fn introspections(&self) -> usize {
        self.requests_to(INTROSPECT_PATH).await
    }

    pub async fn userinfo_calls(&self) -> usize {
        self.requests_to(USERINFO_PATH).await
    }
}
