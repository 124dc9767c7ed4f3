//! What every test builds on: a fake identity provider ([`FakeIdp`]), an app of the test's
//! own ([`TestApp::builder`]), the databases and Redis behind it, logs on demand (`TEST_LOG`),
//! waiting for asynchronous effects ([`eventually`]) and reading an app's own metrics.

mod app;
mod binary;
mod idp;
mod logging;
mod metrics;
mod poll;
mod proxies;
mod storage;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use token_exchange::config::{ClientSettings, RouteSettings, Settings};

pub use app::{TestApp, TestAppBuilder, spawn_app};
pub use binary::{ServerProcess, check_config_online, kept_config_file, real_now};
pub use idp::{FakeIdp, UpstreamKey};
pub use logging::init_test_log;
pub use metrics::MetricsText;
pub use poll::eventually;
pub use proxies::{ProxyProcess, https_front, https_introspection};

/// The `Retry-After` header, in seconds.
pub fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("retry-after").map(|value| value.to_str().unwrap().parse().unwrap())
}
pub use storage::{
    TestDatabase, lease_key, postgres_admin_url, random_prefix, redis_acl, redis_cluster_nodes, redis_connection,
    redis_entry_key, redis_keys, redis_revoked_key, redis_sentinel_failover_master, redis_sentinels, redis_tls,
    redis_topologies, redis_url, required_env, sha256_hex, test_kek_file,
};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ISSUER: &str = "https://token-exchange.test";
pub const UPSTREAM_AUDIENCE: &str = "https://api.example.com";
pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "gateway-secret";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const INTROSPECT_PATH: &str = "/introspect";
pub const USERINFO_PATH: &str = "/userinfo";
pub const UPSTREAM_CLIENT_ID: &str = "token-exchange";
pub const UPSTREAM_CLIENT_SECRET: &str = "upstream-secret";

/// The fixed "now" every test app starts at, in Unix seconds.
pub fn start_time() -> i64 {
    1_800_000_000
}

/// argon2 is slow on purpose: hash each test secret once per process.
pub fn secret_hash(secret: &str) -> String {
    static HASHES: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut hashes = HASHES.get_or_init(Default::default).lock().unwrap();
    hashes.entry(secret.to_owned()).or_insert_with(|| token_exchange::clients::hash_secret(secret).unwrap()).clone()
}

/// A client that may ask for the usual audiences and scopes.
pub fn client(client_id: &str, secret: &str) -> ClientSettings {
    ClientSettings {
        client_id: client_id.into(),
        secret_hash: Some(secret_hash(secret)),
        jwks: None,
        jwks_uri: None,
        assertion_max_lifetime: None,
        audiences: vec!["orders".into(), "billing".into(), "https://orders.internal/api".into()],
        scopes: vec!["read".into(), "write".into()],
        upstream: None,
        admin: false,
    }
}

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
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

/// The forward-auth route `orders`: `api.example.com/api/orders`, exchanged as the client
/// `gateway` for the audience `orders` and the scope `read`.
pub fn orders_route() -> RouteSettings {
    RouteSettings {
        name: "orders".into(),
        hosts: vec!["api.example.com".into()],
        path_prefix: "/api/orders".into(),
        methods: Vec::new(),
        client: CLIENT_ID.into(),
        audience: "orders".into(),
        scope: Some("read".into()),
    }
}

pub fn with_orders_route(settings: &mut Settings) {
    settings.forward_auth.routes.push(orders_route());
}

/// An `Authorization: Basic` value, with id and secret form-urlencoded first (RFC 6749 §2.3.1).
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

/// An HTTP client whose requests come from `127.0.0.<last>`: another peer of the same app
/// (all of 127.0.0.0/8 is loopback on Linux).
pub fn from_peer(last: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, last])).build().unwrap()
}

/// A token exchange of a fresh subject token, authenticated with HTTP Basic as
/// `client_id`/`secret`, sent through `http` (see [`from_peer`]).
pub async fn exchange_as(
    http: &reqwest::Client,
    app: &TestApp,
    idp: &FakeIdp,
    client_id: &str,
    secret: &str,
) -> reqwest::Response {
    let subject = idp.token(app.now());
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", subject.as_str()), ("subject_token_type", JWT)];
    app.post_form_via(http, "/token", client_id, secret, &form).await
}
