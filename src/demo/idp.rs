//! The DEMO identity provider: issues access tokens for one demo user, opaque or JWT, to
//! anyone on this machine, and answers for them the way a real provider does: OpenID
//! discovery, a JWKS, RFC 7662 introspection (for token-exchange, with client credentials) and
//! OIDC userinfo. Every answer carries an `X-Demo` header (and JSON answers a `demo` member),
//! and every log line says DEMO. Its key and its tokens live in memory only.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue, WWW_AUTHENTICATE};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::{SharedClock, UnixTime};
use crate::keys::{SigningAlgorithm, SigningKey, sign_jwt};

pub const JWKS_PATH: &str = "/jwks.json";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const USERINFO_PATH: &str = "/userinfo";
/// Where anyone gets a demo user's token: `POST /demo/token?kind=opaque|jwt`.
pub const TOKEN_PATH: &str = "/demo/token";
/// The `aud` of the tokens it issues.
pub const AUDIENCE: &str = "demo-api";
/// The credentials token-exchange presents at introspection (the secret is made at start).
pub const INTROSPECTION_CLIENT_ID: &str = "token-exchange-demo";

/// The one user, and the application its tokens were issued to.
const SUBJECT: &str = "demo-user";
const EMAIL: &str = "demo-user@example.invalid";
const NAME: &str = "Demo User";
const ISSUED_TO: &str = "demo-app";
const SCOPE: &str = "read write";
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Tokens remembered at once; past it, expired ones are dropped and new requests refused.
const MAX_LIVE_TOKENS: usize = 10_000;
/// Opaque tokens start with this, so nobody mistakes one for a real credential.
const OPAQUE_PREFIX: &str = "demo_opaque_";
const NOTICE: &str = "DEMO identity provider of `token-exchange demo`: it issues tokens for a demo user to anyone \
                      on this machine. Never use it for real.";

/// The running DEMO identity provider.
pub struct DemoIdp {
    base_url: String,
    introspection_secret: String,
    handle: ServerHandle,
}

impl DemoIdp {
    /// Binds `address` (loopback only) and serves on the current Tokio runtime.
    pub fn start(address: SocketAddr, clock: SharedClock) -> anyhow::Result<Self> {
        anyhow::ensure!(address.ip().is_loopback(), "the DEMO identity provider listens on loopback only");
        let listener = TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {address} for the DEMO identity provider"))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let pkcs8 = SigningKey::generate_pkcs8(SigningAlgorithm::ES256)?;
        let key = SigningKey::from_pkcs8(SigningAlgorithm::ES256, &pkcs8)?;
        let introspection_secret = random_text()?;
        let expected_credentials = basic(INTROSPECTION_CLIENT_ID, &introspection_secret);
        let provider = web::Data::new(Provider {
            issuer: base_url.clone(),
            key,
            expected_credentials,
            clock,
            issued: Mutex::new(HashMap::new()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(provider.clone())
                .route("/.well-known/openid-configuration", web::get().to(discovery))
                .route(JWKS_PATH, web::get().to(jwks))
                .route(TOKEN_PATH, web::post().to(issue))
                .route(INTROSPECTION_PATH, web::post().to(introspect))
                .route(USERINFO_PATH, web::get().to(userinfo))
                .route(USERINFO_PATH, web::post().to(userinfo))
                .default_service(web::to(not_found))
                .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-Demo", "DEMO identity provider")))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(demo = true, error = %error, "the DEMO identity provider stopped");
            }
        });
        tracing::warn!(demo = true, url = %base_url, "DEMO identity provider listening: {NOTICE}");
        Ok(Self { base_url, introspection_secret, handle })
    }

    /// Its issuer, which is also the base of its endpoints.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn introspection_secret(&self) -> &str {
        &self.introspection_secret
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Opaque,
    Jwt,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Opaque => "opaque",
            Self::Jwt => "jwt",
        }
    }
}

struct Issued {
    kind: Kind,
    issued_at: UnixTime,
    expires_at: UnixTime,
}

struct Provider {
    issuer: String,
    key: SigningKey,
    /// The whole `Authorization` header token-exchange sends to introspection.
    expected_credentials: String,
    clock: SharedClock,
    /// Issued tokens by the SHA-256 of the token, never the token itself.
    issued: Mutex<HashMap<Vec<u8>, Issued>>,
}

impl Provider {
    /// The token if it is one we issued and it has not expired.
    fn lookup(&self, token: &str, now: UnixTime) -> Option<(Kind, UnixTime, UnixTime)> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let found = issued.get(&digest(token))?;
        (found.expires_at > now).then_some((found.kind, found.issued_at, found.expires_at))
    }

    fn remember(&self, token: &str, issued: Issued) -> bool {
        let mut tokens = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_LIVE_TOKENS {
            tokens.retain(|_, t| t.expires_at > issued.issued_at);
        }
        if tokens.len() >= MAX_LIVE_TOKENS {
            return false;
        }
        tokens.insert(digest(token), issued);
        true
    }

    fn profile(&self) -> Value {
        json!({"sub": SUBJECT, "email": EMAIL, "name": NAME, "demo": NOTICE})
    }
}

/// OpenID Connect Discovery 1.0, the parts that exist here.
async fn discovery(provider: web::Data<Provider>) -> HttpResponse {
    let issuer = &provider.issuer;
    answer(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            "introspection_endpoint": format!("{issuer}{INTROSPECTION_PATH}"),
            "userinfo_endpoint": format!("{issuer}{USERINFO_PATH}"),
            "demo_token_endpoint": format!("{issuer}{TOKEN_PATH}"),
            "id_token_signing_alg_values_supported": [provider.key.algorithm().as_str()],
            "demo": NOTICE,
        }),
    )
}

async fn jwks(provider: web::Data<Provider>) -> HttpResponse {
    answer(StatusCode::OK, json!({"keys": [provider.key.public_jwk()]}))
}

/// `POST /demo/token?kind=opaque|jwt`: an access token for the demo user, no questions asked.
async fn issue(provider: web::Data<Provider>, request: HttpRequest) -> HttpResponse {
    let kind = match field(request.query_string().as_bytes(), "kind").as_deref() {
        None | Some("opaque") => Kind::Opaque,
        Some("jwt") => Kind::Jwt,
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "kind must be opaque or jwt"),
    };
    let now = provider.clock.now();
    let expires_at = now + TOKEN_LIFETIME;
    let token = match kind {
        Kind::Opaque => random_text().map(|random| format!("{OPAQUE_PREFIX}{random}")),
        Kind::Jwt => random_text().and_then(|jti| {
            let claims = json!({
                "iss": provider.issuer, "sub": SUBJECT, "aud": AUDIENCE, "client_id": ISSUED_TO, "scope": SCOPE,
                "iat": now, "exp": expires_at, "jti": jti, "email": EMAIL, "name": NAME,
            });
            Ok(sign_jwt(&provider.key, &claims)?)
        }),
    };
    let Ok(token) = token else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "could not make a token");
    };
    if !provider.remember(&token, Issued { kind, issued_at: now, expires_at }) {
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "too many live demo tokens");
    }
    tracing::info!(demo = true, kind = kind.as_str(), sub = SUBJECT, "DEMO identity provider issued an access token");
    answer(
        StatusCode::OK,
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "scope": SCOPE,
            "demo": NOTICE,
        }),
    )
}

/// RFC 7662: for token-exchange only (client credentials); unknown or expired tokens are
/// `{"active": false}`.
async fn introspect(provider: web::Data<Provider>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let presented = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(presented, provider.expected_credentials.as_bytes())) {
        tracing::info!(demo = true, "DEMO identity provider refused introspection: wrong client credentials");
        let refused = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        return challenged(refused, "Basic realm=\"DEMO identity provider\"");
    }
    let Some(token) = field(&body, "token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is missing");
    };
    let now = provider.clock.now();
    let Some((kind, issued_at, expires_at)) = provider.lookup(&token, now) else {
        tracing::info!(demo = true, "DEMO identity provider introspected a token: not active");
        return answer(StatusCode::OK, json!({"active": false, "demo": NOTICE}));
    };
    tracing::info!(demo = true, kind = kind.as_str(), "DEMO identity provider introspected a token: active");
    answer(
        StatusCode::OK,
        json!({
            "active": true, "sub": SUBJECT, "client_id": ISSUED_TO, "scope": SCOPE, "token_type": "Bearer",
            "iss": provider.issuer, "aud": AUDIENCE, "iat": issued_at, "exp": expires_at,
            "email": EMAIL, "name": NAME, "demo": NOTICE,
        }),
    )
}

/// OIDC Core §5.3: the demo user's profile for any live token it issued.
async fn userinfo(provider: web::Data<Provider>, request: HttpRequest) -> HttpResponse {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let known = bearer.and_then(|token| provider.lookup(token, provider.clock.now()));
    if known.is_none() {
        tracing::info!(demo = true, "DEMO identity provider refused userinfo: unknown or expired token");
        let refused = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown or expired token");
        return challenged(refused, "Bearer error=\"invalid_token\"");
    }
    tracing::info!(demo = true, sub = SUBJECT, "DEMO identity provider answered userinfo");
    answer(StatusCode::OK, provider.profile())
}

async fn not_found() -> HttpResponse {
    oauth_error(StatusCode::NOT_FOUND, "not_found", "the DEMO identity provider has no such endpoint")
}

fn answer(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).insert_header((CACHE_CONTROL, "no-store")).json(body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    answer(status, json!({"error": error, "error_description": description, "demo": NOTICE}))
}

/// RFC 6750 §3 and RFC 6749 §5.2: a 401 names the scheme to use.
fn challenged(mut response: HttpResponse, challenge: &'static str) -> HttpResponse {
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// The first `name` field of a query string or a form body.
fn field(encoded: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// 256 random bits, base64url.
fn random_text() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// RFC 6749 §2.3.1: both parts form-urlencoded, then base64.
fn basic(client_id: &str, secret: &str) -> String {
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::FixedClock;

    async fn introspect(idp: &DemoIdp, secret: &str, token: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(idp.url(INTROSPECTION_PATH))
            .basic_auth(INTROSPECTION_CLIENT_ID, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn it_answers_for_the_tokens_it_issued_and_only_while_they_live() {
        let clock = FixedClock::at(1_800_000_000);
        let idp = DemoIdp::start("127.0.0.1:0".parse().unwrap(), Arc::new(clock.clone())).unwrap();
        let http = reqwest::Client::new();
        let issued: Value =
            http.post(idp.url(&format!("{TOKEN_PATH}?kind=opaque"))).send().await.unwrap().json().await.unwrap();
        let token = issued["access_token"].as_str().unwrap();
        assert!(token.starts_with(OPAQUE_PREFIX));
        let secret = idp.introspection_secret().to_owned();

        let (status, active) = introspect(&idp, &secret, token).await;
        assert_eq!((status, &active["active"], &active["sub"]), (200, &json!(true), &json!(SUBJECT)));
        assert_eq!(active["aud"], AUDIENCE, "the upstream lists audiences, so introspection names one");
        assert_eq!(introspect(&idp, &secret, "demo_opaque_unknown").await.1["active"], json!(false));
        assert_eq!(introspect(&idp, "wrong", token).await.0, 401);
        let profile = http.get(idp.url(USERINFO_PATH)).bearer_auth(token).send().await.unwrap();
        assert_eq!(profile.headers()["x-demo"], "DEMO identity provider");
        assert_eq!(profile.json::<Value>().await.unwrap()["sub"], SUBJECT);

        clock.advance(TOKEN_LIFETIME);
        assert_eq!(introspect(&idp, &secret, token).await.1["active"], json!(false), "expired");
        let expired = http.get(idp.url(USERINFO_PATH)).bearer_auth(token).send().await.unwrap();
        assert_eq!(expired.status(), 401);
        idp.stop().await;
    }
}
