//! A wiremock identity provider: it publishes a JWKS, signs subject tokens and answers
//! introspection and userinfo calls the way a test tells it to, in JSON or signed (RFC 9701,
//! OIDC signed userinfo), and publishes metadata documents where a test puts them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use token_exchange::config::{AnswerFormat, UpstreamSettings};
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

    /// The usual opaque upstream, introspecting at `endpoint` instead (a proxy, a TLS front).
    pub fn introspection_upstream_at(&self, endpoint: &str) -> UpstreamSettings {
        let mut upstream = self.introspection_upstream();
        upstream.introspection_endpoint = Some(endpoint.parse().unwrap());
        upstream
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

    /// Introspection answers `response` about every token.
    pub async fn introspection_answers_all(&self, response: ResponseTemplate) {
        Mock::given(method("POST")).and(path(INTROSPECT_PATH)).respond_with(response).mount(&self.server).await;
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

    /// An opaque upstream `name` whose introspection and/or userinfo answers are signed JWTs,
    /// checked with this server's JWKS.
    pub fn signed_settings(&self, name: &str, introspection: bool, userinfo: bool) -> UpstreamSettings {
        let mut settings = self.opaque_settings(name, introspection, userinfo);
        settings.jwks_uri = Some(format!("{}{JWKS_PATH}", self.issuer()).parse().unwrap());
        if introspection {
            settings.introspection_format = AnswerFormat::Jwt;
        }
        if userinfo {
            settings.userinfo_format = AnswerFormat::Jwt;
        }
        settings
    }

    /// An RFC 9701 answer signed with the current key: `iss`, `aud`, `iat`, and the RFC 7662
    /// `members` in `token_introspection`.
    pub fn signed_introspection(&self, issuer: &str, audience: &str, iat: i64, members: Value) -> String {
        let header = json!({"alg": "RS256", "typ": "token-introspection+jwt", "kid": self.current_key().kid()});
        let claims = json!({"iss": issuer, "aud": audience, "iat": iat, "token_introspection": members});
        self.current_key().sign_raw(&header, &claims)
    }

    /// A signed userinfo answer (OIDC Core §5.3.2): the `profile` members with `iss`, `aud`, `iat`.
    pub fn signed_userinfo(&self, issuer: &str, audience: &str, iat: i64, profile: Value) -> String {
        let mut claims = json!({"iss": issuer, "aud": audience, "iat": iat});
        merge(&mut claims, profile);
        self.current_key().sign(&claims)
    }

    /// Introspection answers `jws` (as `application/token-introspection+jwt`) for `token`, to a
    /// request that asks for exactly that.
    pub async fn introspection_answers_signed(&self, token: &str, jws: &str) {
        let media_type = "application/token-introspection+jwt";
        Mock::given(method("POST"))
            .and(path(INTROSPECT_PATH))
            .and(header("accept", media_type))
            .and(body_string_contains(format!("token={token}&")))
            .respond_with(ResponseTemplate::new(200).set_body_raw(jws.to_owned(), media_type))
            .mount(&self.server)
            .await;
    }

    /// Userinfo answers `jws` (as `application/jwt`) for `token`, to a request that asks for it.
    pub async fn userinfo_answers_signed(&self, token: &str, jws: &str) {
        Mock::given(method("GET"))
            .and(path(USERINFO_PATH))
            .and(header("accept", "application/jwt"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_raw(jws.to_owned(), "application/jwt"))
            .mount(&self.server)
            .await;
    }

    /// The metadata of a provider whose issuer is `issuer` and whose endpoints are this
    /// server's, with the signing algorithms an oidc-provider publishes.
    pub fn metadata_document(&self, issuer: &str) -> Value {
        let base = self.issuer();
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "introspection_endpoint": format!("{base}{INTROSPECT_PATH}"),
            "userinfo_endpoint": format!("{base}{USERINFO_PATH}"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "introspection_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
        })
    }

    /// Serves `response` at `at` (a well-known path such as `/opaque/.well-known/openid-configuration`).
    pub async fn metadata_answers(&self, at: &str, response: ResponseTemplate) {
        Mock::given(method("GET")).and(path(at)).respond_with(response).mount(&self.server).await;
    }

    pub async fn publish_metadata(&self, at: &str, document: Value) {
        self.metadata_answers(at, ResponseTemplate::new(200).set_body_json(document)).await;
    }
}
