use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value, json};
use token_exchange::clock::FixedClock;
use token_exchange::config::{ClientSettings, Settings, UpstreamSettings};
use token_exchange::keys::{SigningAlgorithm, SigningKey};
use token_exchange::startup::Application;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ISSUER: &str = "https://token-exchange.test";
pub const UPSTREAM_AUDIENCE: &str = "https://api.example.com";
pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "gateway-secret";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The fixed "now" every test starts at.
pub fn start_time() -> i64 {
    1_800_000_000
}

/// argon2 is slow on purpose: hash each test secret once per process.
pub fn secret_hash(secret: &str) -> String {
    static HASHES: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> = OnceLock::new();
    let hashes = HASHES.get_or_init(Default::default);
    let mut hashes = hashes.lock().unwrap();
    hashes.entry(secret.to_owned()).or_insert_with(|| token_exchange::clients::hash_secret(secret).unwrap()).clone()
}

pub fn client(client_id: &str, secret: &str) -> ClientSettings {
    ClientSettings {
        client_id: client_id.into(),
        secret_hash: secret_hash(secret),
        audiences: vec!["orders".into(), "billing".into(), "https://orders.internal/api".into()],
        scopes: vec!["read".into(), "write".into()],
        upstream: None,
        admin: false,
    }
}

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

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A wiremock identity provider that publishes a JWKS and signs subject tokens.
pub struct FakeIdp {
    pub server: MockServer,
    pub keys: Vec<UpstreamKey>,
}

impl FakeIdp {
    pub async fn start() -> Self {
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
}

/// Sets or (with null) removes top-level members.
pub fn merge(target: &mut Value, changes: Value) {
    let (Some(target), Value::Object(changes)) = (target.as_object_mut(), changes) else { return };
    for (name, value) in changes {
        if value.is_null() {
            target.remove(&name);
        } else {
            target.insert(name, value);
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub clock: FixedClock,
    pub http: reqwest::Client,
    _data: Arc<tempfile::TempDir>,
}

/// Settings for a test app: port 0, a fresh SQLite file, one upstream, one client.
pub fn test_settings(idp: &FakeIdp, data: &tempfile::TempDir) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.issuer = ISSUER.into();
    settings.server.workers = Some(1);
    settings.storage.database_url = format!("sqlite://{}/test.db", data.path().display());
    settings.upstreams = vec![idp.upstream_settings()];
    settings.clients = vec![client(CLIENT_ID, CLIENT_SECRET)];
    settings
}

pub async fn spawn_app(idp: &FakeIdp) -> TestApp {
    spawn_app_with(idp, |_| {}).await
}

pub async fn spawn_app_with(idp: &FakeIdp, customize: impl FnOnce(&mut Settings)) -> TestApp {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(idp, &data);
    customize(&mut settings);
    spawn_with_settings(settings, data).await
}

pub async fn spawn_with_settings(settings: Settings, data: Arc<tempfile::TempDir>) -> TestApp {
    settings.validate().unwrap();
    let clock = FixedClock::at(start_time());
    let app = Application::build_with_clock(settings, Arc::new(clock.clone())).await.unwrap();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp { address: format!("http://127.0.0.1:{port}"), clock, http: reqwest::Client::new(), _data: data }
}

impl TestApp {
    pub fn now(&self) -> i64 {
        use token_exchange::clock::Clock;
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POST /token with HTTP Basic as the test client and exactly these form pairs.
    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/token"))
            .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_html_form::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// A plain exchange of `subject` with `extra` parameters added.
    pub async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![("grant_type", TOKEN_EXCHANGE), ("subject_token", subject), ("subject_token_type", JWT)];
        form.extend_from_slice(extra);
        self.post_token(&form).await
    }

    pub async fn jwks(&self) -> Value {
        self.http.get(self.url(JWKS_PATH)).send().await.unwrap().json().await.unwrap()
    }

    /// Verifies a minted token the way a downstream service does: our JWKS, our issuer, its
    /// own audience, `typ: at+jwt`.
    pub async fn verify_as_downstream(&self, token: &str, audience: &str) -> Map<String, Value> {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 §2.1 typ");
        let kid = header.kid.clone().expect("minted tokens carry a kid");
        let jwks = self.jwks().await;
        let jwk_value =
            jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("kid published");
        let jwk: Jwk = serde_json::from_value(jwk_value.clone()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The minted exp follows the app's fixed clock, not the wall clock.
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
                .expect("the minted token verifies with the published JWKS");
        let exp = data.claims["exp"].as_i64().unwrap();
        assert!(exp > self.now(), "minted token is not expired at issue time");
        data.claims
    }
}

pub fn basic(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| serde_html_form::to_string([("v", s)]).unwrap()[2..].to_owned();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

/// Asserts an RFC 6749 §5.2 error and returns its body.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "HTTP status");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "error code in {body}");
    assert!(body["error_description"].is_string(), "error_description in {body}");
    body
}

/// A fresh, empty PostgreSQL database for one test; `TEST_POSTGRES_URL` names the server.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection as _;
    let admin =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("te_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL reachable (see scripts/test)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut connection).await.unwrap();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap();
    format!("{base}/{name}")
}

pub const INTROSPECT_PATH: &str = "/introspect";
pub const USERINFO_PATH: &str = "/userinfo";
pub const UPSTREAM_CLIENT_ID: &str = "token-exchange";
pub const UPSTREAM_CLIENT_SECRET: &str = "upstream-secret";

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix of its own for every test, so tests never see each other's entries.
pub fn random_prefix() -> String {
    format!("te-test-{}", uuid::Uuid::new_v4().simple())
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl FakeIdp {
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

    /// Introspection answers `body` for `token` (and only for it).
    pub async fn introspection_answers(&self, token: &str, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(INTROSPECT_PATH))
            .and(wiremock::matchers::body_string_contains(format!("token={token}&")))
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
            .and(wiremock::matchers::header("authorization", format!("Bearer {token}").as_str()))
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

/// Settings for an app whose opaque tokens go to `idp`'s introspection, with Redis as L2.
pub fn with_opaque_and_redis(idp: &FakeIdp, prefix: &str) -> impl FnOnce(&mut Settings) {
    let upstream = idp.opaque_settings("opaque", true, false);
    let prefix = prefix.to_owned();
    move |settings| {
        settings.upstreams.push(upstream);
        settings.cache.redis_url = Some(redis_url());
        settings.cache.redis_prefix = prefix;
    }
}

impl TestApp {
    /// A plain exchange of an opaque access token.
    pub async fn exchange_opaque(&self, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form =
            vec![("grant_type", TOKEN_EXCHANGE), ("subject_token", subject), ("subject_token_type", ACCESS_TOKEN)];
        form.extend_from_slice(extra);
        self.post_token(&form).await
    }

    pub async fn post_form_as(
        &self,
        path: &str,
        client_id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Authorization", basic(client_id, secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_html_form::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
    }
}

pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable (see scripts/test)")
}
