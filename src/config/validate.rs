//! Checks of what types alone cannot say; every problem is reported with its key.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::{ConfigError, InvalidSetting, Settings, UpstreamSettings};
use crate::cache::RedisTopology;
use crate::keys::JWKS_MAX_AGE;
// Tokens and client secrets cross these connections: TLS, except to this very machine.
use crate::upstream::is_secure_endpoint as is_secure;
use crate::upstream::{AnswerFormat, Egress};

/// Below this the in-process caches hold a few thousand identities at most: a typo, not a plan.
const MIN_CACHE_BYTES: u64 = 1024 * 1024;

/// Claims we set ourselves; copying them from a subject token would let upstream data override
/// our own decisions.
const RESERVED_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "act", "may_act", "cnf"];

impl Settings {
    /// Checks what types alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut fail = |key: String, reason: &str| {
            problems.push(InvalidSetting { key, reason: reason.into() });
        };
        check_issuer(&self.server.issuer, &mut fail);
        if self.server.max_body_bytes < 1024 {
            fail("server.max_body_bytes".into(), "must be at least 1024");
        }
        if self.server.body_read_timeout.is_zero() {
            fail("server.body_read_timeout".into(), "must be greater than zero");
        }
        if self.server.max_connections_per_worker == 0 {
            fail("server.max_connections_per_worker".into(), "must be at least 1");
        }
        if self.server.workers == Some(0) {
            fail("server.workers".into(), "must be at least 1");
        }
        if self.server.max_failed_client_auth_per_minute == 0 {
            fail("server.max_failed_client_auth_per_minute".into(), "must be at least 1");
        }
        for (key, reason) in self.rate_limits.problems() {
            fail(format!("rate_limits.{key}"), reason);
        }
        if !(self.storage.database_url.starts_with("sqlite:")
            || self.storage.database_url.starts_with("postgres://")
            || self.storage.database_url.starts_with("postgresql://"))
        {
            fail("storage.database_url".into(), "must start with sqlite: or postgres://");
        }
        if self.storage.max_connections == 0 {
            fail("storage.max_connections".into(), "must be at least 1");
        }
        if self.tokens.ttl < Duration::from_secs(1) || self.tokens.ttl > Duration::from_secs(86_400) {
            fail("tokens.ttl".into(), "must be between 1s and 24h, in whole seconds");
        }
        if self.tokens.default_audience.trim().is_empty() {
            fail("tokens.default_audience".into(), "must not be empty");
        }
        for (i, claim) in self.tokens.claims.iter().enumerate() {
            if RESERVED_CLAIMS.contains(&claim.as_str()) {
                fail(format!("tokens.claims[{i}]"), "is set by token-exchange itself");
            }
        }
        if self.keys.refresh_interval.is_zero() {
            fail("keys.refresh_interval".into(), "must be greater than zero");
        }
        if self.keys.publish_ahead < JWKS_MAX_AGE + self.keys.refresh_interval {
            fail("keys.publish_ahead".into(), "must be at least keys.refresh_interval plus the JWKS max-age (300s)");
        }
        if self.keys.rotate_every.is_some_and(|every| every <= self.keys.publish_ahead) {
            fail("keys.rotate_every".into(), "must be longer than keys.publish_ahead");
        }
        if self.upstream_http.timeout.is_zero() {
            fail("upstream_http.timeout".into(), "must be greater than zero");
        }
        if self.upstream_http.connect_timeout.is_zero() {
            fail("upstream_http.connect_timeout".into(), "must be greater than zero");
        }
        if let Err(problem) = self.upstream_http.extra_roots() {
            fail("upstream_http.ca_file".into(), &problem);
        }
        match self.upstream_http.egress() {
            Err(problem) => fail("upstream_http.proxy".into(), &problem),
            Ok(Egress::Proxy(_)) => {}
            Ok(_) if !self.upstream_http.no_proxy.is_empty() => {
                fail("upstream_http.no_proxy".into(), "applies to a proxy named in upstream_http.proxy only");
            }
            Ok(_) => {}
        }
        if self.cache.max_ttl.is_zero() {
            fail("cache.max_ttl".into(), "must be greater than zero");
        }
        if self.cache.redis_timeout.is_zero() {
            fail("cache.redis_timeout".into(), "must be greater than zero");
        }
        self.validate_redis(&mut fail);
        if self.cache.max_entries == 0 {
            fail("cache.max_entries".into(), "must be at least 1");
        }
        if self.cache.max_bytes < MIN_CACHE_BYTES {
            fail("cache.max_bytes".into(), "must be at least 1 MiB (1048576)");
        }
        self.validate_upstreams(&mut fail);
        self.validate_clients(&mut fail);
        self.validate_routes(&mut fail);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// One topology at most, written so that it can be used; a prefix that cannot break the
    /// hash tags every token's keys share.
    fn validate_redis(&self, fail: &mut impl FnMut(String, &str)) {
        let cache = &self.cache;
        let chosen =
            [cache.redis_url.is_some(), !cache.redis_cluster_nodes.is_empty(), !cache.redis_sentinels.is_empty()];
        if chosen.iter().filter(|set| **set).count() > 1 {
            fail("cache.redis_url".into(), "only one of redis_url, redis_cluster_nodes and redis_sentinels may be set");
            return;
        }
        if cache.redis_sentinels.is_empty() != cache.redis_sentinel_master.is_none() {
            fail("cache.redis_sentinel_master".into(), "goes with redis_sentinels, and they with it");
            return;
        }
        if cache.redis_prefix.is_empty() || cache.redis_prefix.contains(['{', '}']) {
            fail(
                "cache.redis_prefix".into(),
                "must be non-empty and hold no { or } (they mark Redis Cluster hash tags)",
            );
        }
        let Some(redis) = self.redis() else { return };
        // The key that chose the topology, as `Settings::redis` chose it.
        let key = match &redis.topology {
            RedisTopology::Cluster { .. } => "cache.redis_cluster_nodes",
            RedisTopology::Sentinel { .. } => "cache.redis_sentinels",
            RedisTopology::Url(_) => "cache.redis_url",
        };
        if let Some(path) = &cache.redis_tls_ca_file
            && !path.is_file()
        {
            fail("cache.redis_tls_ca_file".into(), "is not a readable file");
            return;
        }
        if let Err(error) = crate::cache::check_redis_topology(&redis) {
            fail(key.into(), &error.to_string());
        }
    }

    fn validate_upstreams(&self, fail: &mut impl FnMut(String, &str)) {
        let mut defaults = 0;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let key = |field: &str| format!("upstreams[{i}].{field}");
            if self.upstreams[..i].iter().any(|u| u.name == upstream.name) {
                fail(key("name"), "is used by another upstream");
            }
            if self.upstreams[..i].iter().any(|u| u.issuer == upstream.issuer) {
                fail(key("issuer"), "is used by another upstream");
            }
            match Url::parse(&upstream.issuer) {
                Ok(url) if !is_secure(&url) => fail(key("issuer"), "must use https (plain http only on loopback)"),
                Ok(_) => {}
                Err(_) => fail(key("issuer"), "must be an absolute URL"),
            }
            for (field, url) in upstream.configured_endpoints() {
                if url.is_some_and(|url| !is_secure(url)) {
                    fail(key(field), "must use https (plain http only on loopback)");
                }
            }
            if upstream.algorithms.is_empty() {
                fail(key("algorithms"), "must name at least one algorithm");
            }
            if upstream.algorithms.iter().any(|alg| is_symmetric(*alg)) {
                fail(key("algorithms"), "HMAC algorithms are not accepted from an upstream");
            }
            let validates_jwts = upstream.introspection_endpoint.is_none() && upstream.userinfo_endpoint.is_none();
            if validates_jwts && upstream.audiences.is_empty() {
                fail(key("audiences"), "must name at least one accepted audience");
            }
            if upstream.introspection_endpoint.is_some()
                && (upstream.client_id.is_none() || upstream.client_secret.is_none())
            {
                fail(key("client_id"), "introspection needs client_id and client_secret");
            }
            if upstream.accept_answers_without_audience && upstream.audiences.is_empty() {
                fail(key("accept_answers_without_audience"), "applies only to an upstream with audiences");
            }
            let names_clients = upstream.introspection_endpoint.is_some() || !upstream.audiences.is_empty();
            if !upstream.allowed_clients.is_empty() && !names_clients {
                fail(key("allowed_clients"), "needs introspection or JWTs: userinfo answers name no client");
            }
            if upstream.userinfo_ttl.is_zero() {
                fail(key("userinfo_ttl"), "must be greater than zero");
            }
            validate_answers_and_discovery(upstream, &key, fail);
            check_protection(&upstream.protection, &|field| key(&format!("protection.{field}")), fail);
            if upstream.default_for_opaque {
                defaults += 1;
            }
        }
        if defaults > 1 {
            fail("upstreams".into(), "at most one upstream may set default_for_opaque");
        }
    }

    fn validate_clients(&self, fail: &mut impl FnMut(String, &str)) {
        for (i, client) in self.clients.iter().enumerate() {
            let key = |field: &str| format!("clients[{i}].{field}");
            if client.client_id.is_empty() {
                fail(key("client_id"), "must not be empty");
            }
            if self.clients[..i].iter().any(|c| c.client_id == client.client_id) {
                fail(key("client_id"), "is used by another client");
            }
            validate_client_credential(client, &key, fail);
            if let Some(name) = &client.upstream
                && !self.upstreams.iter().any(|u| &u.name == name)
            {
                fail(key("upstream"), "names no configured upstream");
            }
            for scope in &client.scopes {
                if crate::vocabulary::ScopeToken::parse(scope).is_none() {
                    fail(key("scopes"), "holds a value that is not a valid scope token");
                }
            }
        }
    }
}

impl Settings {
    fn validate_routes(&self, fail: &mut impl FnMut(String, &str)) {
        for (i, route) in self.forward_auth.routes.iter().enumerate() {
            let key = |field: &str| format!("forward_auth.routes[{i}].{field}");
            if route.name.is_empty() {
                fail(key("name"), "must not be empty");
            }
            if self.forward_auth.routes[..i].iter().any(|r| r.name == route.name) {
                fail(key("name"), "is used by another route");
            }
            match self.clients.iter().find(|c| c.client_id == route.client) {
                None => fail(key("client"), "names no configured client"),
                Some(client) if !client.audiences.contains(&route.audience) => {
                    fail(key("audience"), "is not among the audiences of the route's client")
                }
                Some(_) => {}
            }
            if crate::gateway::Route::from_settings(route).is_none() {
                fail(key("path_prefix"), "must be an absolute path in normal form, and scope valid scope tokens");
            }
            if route.hosts.iter().any(|h| h.is_empty() || h.contains(['/', ':'])) {
                fail(key("hosts"), "holds a value that is not a host name or *.domain");
            }
        }
    }
}

/// The longest a call may wait for a free slot: a queue smooths a burst, it holds no backlog.
const LONGEST_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// `[upstreams.protection]`: a breaker needs a cool-down of whole seconds (the app's clock has
/// no finer grain), and a queue a bounded wait.
fn check_protection(
    protection: &crate::upstream::UpstreamProtection,
    key: &impl Fn(&str) -> String,
    fail: &mut impl FnMut(String, &str),
) {
    if protection.failure_threshold > 0 && protection.cool_down < Duration::from_secs(1) {
        fail(key("cool_down"), "must be at least 1s while failure_threshold is set (0 turns the breaker off)");
    }
    if protection.queue_timeout > LONGEST_QUEUE_TIMEOUT {
        fail(key("queue_timeout"), "must be at most 30s");
    }
}

fn check_issuer(issuer: &str, fail: &mut impl FnMut(String, &str)) {
    match Url::parse(issuer) {
        // Plain http only on loopback, so a developer's verifier can discover our keys locally.
        Ok(url) if !is_secure(&url) => {
            fail("server.issuer".into(), "must use https (RFC 8414 §2; plain http only on loopback)")
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            fail("server.issuer".into(), "must have no query or fragment (RFC 8414 §2)")
        }
        Ok(_) if issuer.ends_with('/') => fail("server.issuer".into(), "must not end with '/'"),
        Ok(_) => {}
        Err(_) => fail("server.issuer".into(), "must be an absolute https URL"),
    }
}

/// Signed answers need an endpoint to answer and, for userinfo, the `client_id` they are meant
/// for; discovery needs an issuer metadata can be found under (RFC 8414 §2).
fn validate_answers_and_discovery(
    upstream: &UpstreamSettings,
    key: &impl Fn(&str) -> String,
    fail: &mut impl FnMut(String, &str),
) {
    if upstream.introspection_format == AnswerFormat::Jwt && upstream.introspection_endpoint.is_none() {
        fail(key("introspection_format"), "\"jwt\" needs an introspection_endpoint");
    }
    if upstream.userinfo_format == AnswerFormat::Jwt && upstream.userinfo_endpoint.is_none() {
        fail(key("userinfo_format"), "\"jwt\" needs a userinfo_endpoint");
    }
    if upstream.signs_userinfo() && upstream.client_id.is_none() {
        fail(key("client_id"), "a signed userinfo answer must name client_id in aud: set it");
    }
    if upstream.metadata_max_age.is_zero() {
        fail(key("metadata_max_age"), "must be greater than zero");
    }
    let findable = Url::parse(&upstream.issuer).is_ok_and(|url| url.query().is_none() && url.fragment().is_none());
    if upstream.discovers() && !findable {
        fail(key("issuer"), "must have no query or fragment for its metadata to be discovered (RFC 8414 §2)");
    }
}

fn is_symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Exactly one of `secret_hash`, `jwks`, `jwks_uri`: an argon2id hash, a JWK Set of public
/// asymmetric keys, or an https (loopback http) URL.
fn validate_client_credential(
    client: &crate::clients::ClientSettings,
    key: &impl Fn(&str) -> String,
    fail: &mut impl FnMut(String, &str),
) {
    let methods = [client.secret_hash.is_some(), client.jwks.is_some(), client.jwks_uri.is_some()];
    if methods.iter().filter(|set| **set).count() != 1 {
        fail(key("secret_hash"), "a client needs exactly one of secret_hash, jwks and jwks_uri");
    }
    if let Some(hash) = &client.secret_hash
        && (argon2::PasswordHash::new(hash).is_err() || !hash.starts_with("$argon2id$"))
    {
        fail(key("secret_hash"), "must be an argon2id PHC string (token-exchange hash-secret)");
    }
    if let Some(jwks) = &client.jwks {
        let keys = jwks.get("keys").and_then(serde_json::Value::as_array);
        match crate::upstream::StaticJwks::parse(jwks) {
            Err(problem) => fail(key("jwks"), problem),
            Ok(_) if keys.is_some_and(|keys| keys.iter().any(|k| k.get("d").is_some() || k.get("k").is_some())) => {
                fail(key("jwks"), "must hold public keys only (no private or symmetric key material)")
            }
            Ok(parsed) if !parsed.all_asymmetric() => fail(key("jwks"), "must hold asymmetric keys only"),
            Ok(_) => {}
        }
    }
    if client.assertion_max_lifetime.is_some_and(|lifetime| lifetime > crate::clients::MAX_ASSERTION_LIFETIME) {
        fail(key("assertion_max_lifetime"), "must be at most 1h");
    }
    if client.jwks_uri.as_ref().is_some_and(|url| !is_secure(url)) {
        fail(key("jwks_uri"), "must use https (plain http only on loopback)");
    }
}
