//! An app of the test's own in front of a real identity provider. Real providers stamp real
//! times into their tokens, so the app's clock starts at the wall clock's "now" (and still only
//! moves when the test advances it, to step past cache lifetimes without waiting for them).

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};
use token_exchange::clock::{Clock as _, FixedClock, SystemClock};
use token_exchange::config::{Settings, UpstreamSettings};
use token_exchange::startup::Application;

use crate::helpers::{
    ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, ISSUER, JWKS_PATH, JWT, MetricsText, TOKEN_EXCHANGE, TestDatabase, basic,
    client, init_test_log, random_prefix, redis_url,
};

/// The URL `scripts/test` exported in `variable` for the provider `name`. Without it the test
/// cannot run: say so, and how to get one.
pub fn provider_url(variable: &str, name: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: the {name} tests need the {name} that scripts/test starts \
             (run `scripts/test providers`, or set {variable} to a running one)"
        )
    })
}

/// An upstream written as it would be in `[[upstreams]]` of the configuration file: settings
/// this build does not know fail here, by name, instead of failing to compile.
pub fn upstream_from_toml(toml: &str) -> UpstreamSettings {
    Figment::from(Toml::string(toml))
        .extract()
        .unwrap_or_else(|error| panic!("this build does not accept the upstream\n{toml}\n{error}"))
}

/// A running app whose only upstreams are the test's.
pub struct ProviderApp {
    pub address: String,
    pub clock: FixedClock,
    pub http: reqwest::Client,
    _database: Arc<TestDatabase>,
}

impl ProviderApp {
    /// An app with `upstreams`, the client `gateway`, Redis under a prefix of its own, and
    /// whatever `change` adds.
    pub async fn spawn(upstreams: Vec<UpstreamSettings>, change: impl FnOnce(&mut Settings)) -> Self {
        init_test_log();
        let database = TestDatabase::sqlite();
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.issuer = ISSUER.into();
        settings.server.workers = Some(1);
        settings.storage.database_url = database.url().to_owned();
        settings.upstreams = upstreams;
        settings.clients = vec![client(CLIENT_ID, CLIENT_SECRET)];
        settings.cache.redis_url = Some(redis_url());
        settings.cache.redis_prefix = random_prefix();
        change(&mut settings);
        settings.validate().unwrap_or_else(|error| panic!("the test's settings are invalid: {error}"));

        let clock = FixedClock::at(SystemClock.now().as_secs());
        let app = Application::build_with_clock(settings, Arc::new(clock.clone())).await.unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self { address, clock, http: reqwest::Client::new(), _database: database }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Moves the app's time on, as if `duration` had passed.
    pub fn advance(&self, duration: Duration) {
        self.clock.advance(duration);
    }

    /// A token exchange of the JWT `subject` by the client `gateway`.
    pub async fn exchange_jwt(&self, subject: &str) -> reqwest::Response {
        self.exchange(subject, JWT, &[]).await
    }

    /// A token exchange of the opaque access token `subject` by the client `gateway`.
    pub async fn exchange_access_token(&self, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        self.exchange(subject, ACCESS_TOKEN, extra).await
    }

    async fn exchange(&self, subject: &str, token_type: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form =
            vec![("grant_type", TOKEN_EXCHANGE), ("subject_token", subject), ("subject_token_type", token_type)];
        form.extend_from_slice(extra);
        self.http
            .post(self.url("/token"))
            .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// The claims of a token this app minted, checked as a downstream service checks them:
    /// signature by our JWKS, our issuer, the audience `audience`.
    pub async fn minted_claims(&self, response: reqwest::Response, audience: &str) -> Map<String, Value> {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "the exchange succeeds: {body}");
        let token = body["access_token"].as_str().unwrap();
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let jwks: JwkSet = self.http.get(self.url(JWKS_PATH)).send().await.unwrap().json().await.unwrap();
        let jwk = jwks.find(&kid).expect("the minting key is published");
        let mut validation = Validation::new(jsonwebtoken::decode_header(token).unwrap().alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("the minted token verifies with our JWKS")
            .claims
    }

    /// How many `kind` calls (`introspection`, `userinfo`, `jwks`, `discovery`) the app made to
    /// `upstream` that the provider answered with a success.
    pub async fn upstream_calls(&self, upstream: &str, kind: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        MetricsText(text)
            .value(
                "token_exchange_upstream_requests_total",
                &[("upstream", upstream), ("kind", kind), ("status", "2xx")],
            )
            .unwrap_or(0.0)
    }
}

/// Asserts the refusal of an invalid subject token (RFC 8693 §2.2.2: `invalid_request`) and
/// returns its description.
pub async fn assert_refused(response: reqwest::Response, why: &str) -> String {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "{why}: {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.starts_with("subject_token is invalid"), "{why}: {body}");
    description.to_owned()
}

/// Asserts that `check-config --online` succeeded and printed each of `lines` as a line.
pub fn assert_printed(output: &Output, lines: &[String]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "the provider agrees with the configuration\n{stdout}{stderr}");
    for line in lines {
        assert!(stdout.lines().any(|printed| printed == line), "{line:?} printed in\n{stdout}");
    }
}
