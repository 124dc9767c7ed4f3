//! An app of the test's own: port 0, a fixed clock, a database of its own (or shared with a
//! replica), one client, `idp` as its JWT upstream, and whatever the test composes on top:
//!
//! ```ignore
//! let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
//! ```

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};
use token_exchange::clock::{Clock as _, FixedClock};
use token_exchange::config::{Settings, UpstreamSettings};
use token_exchange::startup::{Application, Reloader};

use super::{
    ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, FakeIdp, ISSUER, JWKS_PATH, JWT, MetricsText, TOKEN_EXCHANGE, TestDatabase,
    basic, client, eventually, init_test_log, random_prefix, redis_url, start_time,
};

/// A running app and what a test needs to talk to it and move its time.
pub struct TestApp {
    pub address: String,
    /// The port of the separate metrics listener (`server.metrics_listen`), when there is one.
    pub metrics_port: Option<u16>,
    /// Applies a changed configuration to the running app (what SIGHUP does).
    pub reloader: Arc<Reloader>,
    /// The app's time: it moves only when the test advances it, and every timer of the app
    /// (key maintenance, Redis backoff, reconnect pauses) runs on it.
    pub clock: FixedClock,
    pub http: reqwest::Client,
    /// The settings the app was built with.
    pub settings: Settings,
    database: Arc<TestDatabase>,
}

/// Where the app keeps its keys.
enum DatabaseChoice {
    OwnSqlite,
    FreshPostgres,
    Shared(Arc<TestDatabase>),
}

/// Composes the settings of a [`TestApp`]; every step applies at once, in the order written.
#[must_use = "a builder does nothing until spawned"]
pub struct TestAppBuilder {
    settings: Settings,
    database: DatabaseChoice,
}

/// An app with `idp` as its only upstream and nothing else added.
pub async fn spawn_app(idp: &FakeIdp) -> TestApp {
    TestApp::builder(idp).spawn().await
}

impl TestApp {
    /// Settings for a test app: port 0, one worker, `idp` as the JWT upstream `idp`, the client
    /// `gateway`, and a SQLite database of its own unless told otherwise.
    pub fn builder(idp: &FakeIdp) -> TestAppBuilder {
        init_test_log();
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.issuer = ISSUER.into();
        settings.server.workers = Some(1);
        settings.upstreams = vec![idp.upstream_settings()];
        settings.clients = vec![client(CLIENT_ID, CLIENT_SECRET)];
        TestAppBuilder { settings, database: DatabaseChoice::OwnSqlite }
    }
}

impl TestAppBuilder {
    /// Redis as the shared cache, under a key prefix of this app's own.
    pub fn with_redis(self) -> Self {
        self.with_redis_prefix(&random_prefix())
    }

    /// Redis as the shared cache under `prefix`: replicas given the same prefix share entries
    /// and invalidations.
    pub fn with_redis_prefix(mut self, prefix: &str) -> Self {
        self.settings.cache.redis_url = Some(redis_url());
        self.settings.cache.redis_prefix = prefix.to_owned();
        self
    }

    /// One more upstream, typically for opaque tokens (see `FakeIdp::opaque_settings`).
    pub fn with_opaque_upstream(mut self, upstream: UpstreamSettings) -> Self {
        self.settings.upstreams.push(upstream);
        self
    }

    /// A fresh PostgreSQL database instead of SQLite, dropped with the last app using it.
    pub fn with_postgres(mut self) -> Self {
        self.database = DatabaseChoice::FreshPostgres;
        self
    }

    /// The database of another app (see [`TestApp::database`]): a replica, or a restart.
    pub fn with_database(mut self, database: Arc<TestDatabase>) -> Self {
        self.database = DatabaseChoice::Shared(database);
        self
    }

    /// Any other change to the settings. `storage.database_url` is set by the database choice.
    pub fn configure(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// Builds the app and serves it in the background of the test's runtime.
    pub async fn spawn(self) -> TestApp {
        let database = match self.database {
            DatabaseChoice::OwnSqlite => TestDatabase::sqlite(),
            DatabaseChoice::FreshPostgres => TestDatabase::postgres().await,
            DatabaseChoice::Shared(database) => database,
        };
        let mut settings = self.settings;
        settings.storage.database_url = database.url().to_owned();
        if settings.storage.database_url.starts_with("postgres") && settings.keys.encryption_key_file.is_none() {
            settings.keys.encryption_key_file = Some(super::storage::test_kek_file());
        }
        settings.validate().unwrap_or_else(|error| panic!("the test's settings are invalid: {error}"));
        let clock = FixedClock::at(start_time());
        let followers = InvalidationFollowers::count_before(&settings).await;

        let app = Application::build_with_clock(settings.clone(), Arc::new(clock.clone())).await.unwrap();
        let port = app.port();
        let metrics_port = app.metrics_port();
        let reloader = app.reloader();
        tokio::spawn(app.run_until_stopped());
        // Let the app's background tasks start their first sleep on the clock, so that a test
        // moving the clock from its first line already drives them.
        tokio::task::yield_now().await;
        if let Some(followers) = followers {
            followers.wait_for_one_more().await;
        }
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            metrics_port,
            reloader,
            clock,
            http: reqwest::Client::new(),
            settings,
            database,
        }
    }
}

/// The subscribers of an app's Redis invalidation channel. Replicas learn of revocations
/// through it, so an app counts as started once it listens there.
struct InvalidationFollowers {
    connection: redis::aio::MultiplexedConnection,
    channel: String,
    before: usize,
}

impl InvalidationFollowers {
    /// `None` when the app has no Redis, one other than a single server, or its Redis does not
    /// answer (a test of that case).
    async fn count_before(settings: &Settings) -> Option<Self> {
        let redis = settings.redis()?;
        let channel = token_exchange::cache::RedisKeys::new(&redis.prefix).channel();
        // Other topologies are waited for by their own tests (tests/api/redis_topologies.rs).
        let token_exchange::cache::RedisTopology::Url(url) = &redis.topology else { return None };
        let client = redis::Client::open(url.as_str()).ok()?;
        let connecting = client.get_multiplexed_async_connection();
        let connection = tokio::time::timeout(Duration::from_secs(1), connecting).await.ok()?.ok()?;
        let mut followers = Self { connection, channel, before: 0 };
        // A Redis that wants credentials does not answer this connection: nothing to wait for.
        followers.before = followers.count().await?;
        Some(followers)
    }

    async fn count(&mut self) -> Option<usize> {
        let numsub = redis::cmd("PUBSUB").arg("NUMSUB").arg(&self.channel).query_async(&mut self.connection).await;
        numsub.ok().map(|(_, count): (String, usize)| count)
    }

    async fn wait_for_one_more(mut self) {
        let before = self.before;
        let what = format!("the new app subscribes to {}", self.channel);
        eventually(&what, async || self.count().await.is_some_and(|count| count > before)).await;
    }
}

impl TestApp {
    /// The app's "now", in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now().as_secs()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `path` on the separate metrics listener of an app built with `server.metrics_listen`.
    pub fn metrics_url(&self, path: &str) -> String {
        let port = self.metrics_port.expect("the app was built without server.metrics_listen");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The database the app stores keys in, to give to a replica.
    pub fn database(&self) -> Arc<TestDatabase> {
        self.database.clone()
    }

    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// The Redis key prefix of an app built `with_redis`.
    pub fn redis_prefix(&self) -> &str {
        assert!(self.settings.cache.redis_url.is_some(), "the app was built without Redis");
        &self.settings.cache.redis_prefix
    }

    /// POST /token with HTTP Basic as the test client and exactly these form pairs.
    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_as("/token", CLIENT_ID, CLIENT_SECRET, form).await
    }

    /// POST `path` with HTTP Basic as `client_id` and exactly these form pairs.
    pub async fn post_form_as(
        &self,
        path: &str,
        client_id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.post_form_via(&self.http, path, client_id, secret, form).await
    }

    /// [`Self::post_form_as`] through `http` (another peer, see `from_peer`).
    pub async fn post_form_via(
        &self,
        http: &reqwest::Client,
        path: &str,
        client_id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        http.post(self.url(path))
            .header("Authorization", basic(client_id, secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_html_form::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// A plain exchange of the JWT `subject` with `extra` parameters added.
    pub async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        self.exchange_as_type(subject, JWT, extra).await
    }

    /// A plain exchange of an opaque access token.
    pub async fn exchange_opaque(&self, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        self.exchange_as_type(subject, ACCESS_TOKEN, extra).await
    }

    async fn exchange_as_type(&self, subject: &str, token_type: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form =
            vec![("grant_type", TOKEN_EXCHANGE), ("subject_token", subject), ("subject_token_type", token_type)];
        form.extend_from_slice(extra);
        self.post_token(&form).await
    }

    pub async fn jwks(&self) -> Value {
        self.http.get(self.url(JWKS_PATH)).send().await.unwrap().json().await.unwrap()
    }

    /// This app's own metrics, and no other app's.
    pub async fn metrics(&self) -> MetricsText {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        MetricsText(response.text().await.unwrap())
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
