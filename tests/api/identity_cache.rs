//! The identity cache as seen from outside: upstream calls saved, expiry honoured, failures
//! contained (C-01..C-08 of the checklist).

use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::{Value, json};
use token_exchange::cache::BACKOFF;
use wiremock::ResponseTemplate;

use crate::helpers::*;

fn redis_key(prefix: &str, upstream: &str, token: &str) -> String {
    redis_entry_key(prefix, upstream, token)
}

#[tokio::test]
async fn a_second_exchange_of_the_same_token_makes_no_upstream_call() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("cached-1", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("cached-1", &[]).await.status(), 200);
    assert_eq!(app.exchange_opaque("cached-1", &[]).await.status(), 200);

    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn another_replica_is_served_from_redis_without_asking_the_upstream() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let second = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(first.redis_prefix())
        .spawn()
        .await;
    idp.introspection_active("shared-1", first.now() + 600).await;

    assert_eq!(first.exchange_opaque("shared-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("shared-1", &[]).await.status(), 200);

    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn the_redis_ttl_is_at_most_the_tokens_remaining_lifetime() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("ttl-1", app.now() + 100).await;

    assert_eq!(app.exchange_opaque("ttl-1", &[]).await.status(), 200);

    let ttl: i64 = redis_connection().await.ttl(redis_key(app.redis_prefix(), "opaque", "ttl-1")).await.unwrap();
    assert!(ttl > 0 && ttl <= 95, "TTL {ttl} must be ≤ exp − now − leeway (100 − 5)");
}

#[tokio::test]
async fn the_cache_ttl_is_capped_by_max_ttl() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.cache.max_ttl = Duration::from_secs(30))
        .spawn()
        .await;
    idp.introspection_active("ttl-2", app.now() + 3600).await;

    assert_eq!(app.exchange_opaque("ttl-2", &[]).await.status(), 200);

    let ttl: i64 = redis_connection().await.ttl(redis_key(app.redis_prefix(), "opaque", "ttl-2")).await.unwrap();
    assert!(ttl > 0 && ttl <= 30, "TTL {ttl} must be ≤ max_ttl");
}

#[tokio::test]
async fn a_token_whose_exp_has_passed_is_refused_even_when_redis_still_holds_it() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("late-1", app.now() + 60).await;
    assert_eq!(app.exchange_opaque("late-1", &[]).await.status(), 200);
    let entry = redis_key(app.redis_prefix(), "opaque", "late-1");
    let _: () = redis_connection().await.expire(entry, 86_400).await.unwrap();

    let replica = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(app.redis_prefix())
        .spawn()
        .await;
    replica.clock.advance(Duration::from_secs(61));
    app.clock.advance(Duration::from_secs(61));

    assert_oauth_error(replica.exchange_opaque("late-1", &[]).await, 400, "invalid_request").await;
    assert_oauth_error(app.exchange_opaque("late-1", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_hundred_concurrent_first_exchanges_of_one_token_make_one_upstream_call() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let body = json!({"active": true, "sub": "burst", "exp": app.now() + 600});
    idp.introspection_answers(
        "burst-1",
        ResponseTemplate::new(200).set_body_json(body).set_delay(Duration::from_millis(300)),
    )
    .await;

    let responses = futures_util::future::join_all((0..100).map(|_| app.exchange_opaque("burst-1", &[]))).await;

    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn an_inactive_token_is_negative_cached_for_negative_ttl() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_answers("inactive-1", ResponseTemplate::new(200).set_body_json(json!({"active": false}))).await;

    for _ in 0..3 {
        assert_oauth_error(app.exchange_opaque("inactive-1", &[]).await, 400, "invalid_request").await;
    }
    assert_eq!(idp.introspections().await, 1, "remembered");
    app.clock.advance(Duration::from_secs(31));
    assert_oauth_error(app.exchange_opaque("inactive-1", &[]).await, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 2, "asked again after negative_ttl");
}

async fn assert_unavailable_and_not_cached(response: ResponseTemplate, retry_after: Option<&str>) {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.upstream_http.timeout = Duration::from_millis(500))
        .spawn()
        .await;
    idp.introspection_answers("flaky", response).await;

    let first = app.exchange_opaque("flaky", &[]).await;
    assert_eq!(first.headers().get("retry-after").map(|v| v.to_str().unwrap()), retry_after);
    assert_oauth_error(first, 503, "temporarily_unavailable").await;
    assert_oauth_error(app.exchange_opaque("flaky", &[]).await, 503, "temporarily_unavailable").await;

    assert_eq!(idp.introspections().await, 2, "a failure is never cached");
}

#[tokio::test]
async fn upstream_500_is_temporarily_unavailable_and_not_cached() {
    assert_unavailable_and_not_cached(ResponseTemplate::new(500), None).await;
}

#[tokio::test]
async fn upstream_429_is_temporarily_unavailable_with_its_retry_after_and_not_cached() {
    assert_unavailable_and_not_cached(ResponseTemplate::new(429).insert_header("Retry-After", "12"), Some("12")).await;
}

#[tokio::test]
async fn an_upstream_timeout_is_temporarily_unavailable_and_not_cached() {
    let slow =
        ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "u"})).set_delay(Duration::from_secs(3));
    assert_unavailable_and_not_cached(slow, None).await;
}

#[tokio::test]
async fn policy_is_evaluated_on_every_request_also_on_cache_hits() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("policy-1", app.now() + 600).await;
    assert_eq!(app.exchange_opaque("policy-1", &[("audience", "orders")]).await.status(), 200);

    assert_oauth_error(app.exchange_opaque("policy-1", &[("audience", "payroll")]).await, 400, "invalid_target").await;
    assert_oauth_error(app.exchange_opaque("policy-1", &[("scope", "admin")]).await, 400, "invalid_scope").await;
}

#[tokio::test]
async fn no_raw_token_appears_in_redis_keys_or_values() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("auth0", true, true);
    upstream.token_lifetime = Some(Duration::from_secs(3600));
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).with_redis().spawn().await;
    let tokens = ["SECRET-opaque-token-aaaa", "SECRET-opaque-token-bbbb"];
    idp.introspection_answers(tokens[0], ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "s"})))
        .await;
    idp.userinfo_answers(tokens[0], ResponseTemplate::new(200).set_body_json(json!({"sub": "s"}))).await;
    idp.introspection_answers(tokens[1], ResponseTemplate::new(200).set_body_json(json!({"active": false}))).await;
    for token in tokens {
        app.exchange_opaque(token, &[]).await;
    }
    app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", tokens[0])]).await;

    let mut redis = redis_connection().await;
    let keys = redis_keys(&format!("{}:*", app.redis_prefix())).await;
    assert!(keys.len() >= 3, "entries, sighting and index were written: {keys:?}");
    for key in keys {
        assert!(!key.contains("SECRET"), "raw token in key {key}");
        let value: Value = match redis.key_type::<_, String>(&key).await.unwrap().as_str() {
            "string" => Value::String(redis.get(&key).await.unwrap()),
            "set" => json!(redis.smembers::<_, Vec<String>>(&key).await.unwrap()),
            "zset" => json!(redis.zrange::<_, Vec<String>>(&key, 0, -1).await.unwrap()),
            // Expired since the scan (a single-flight lease lives seconds).
            "none" => continue,
            other => panic!("unexpected Redis type {other}"),
        };
        assert!(!value.to_string().contains("SECRET"), "raw token in the value of {key}");
    }
}

#[tokio::test]
async fn exchanges_keep_working_while_redis_is_unreachable() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.cache.redis_url = Some("redis://127.0.0.1:1".into()))
        .spawn()
        .await;
    idp.introspection_active("no-redis", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("no-redis", &[]).await.status(), 200);
    assert_eq!(app.exchange_opaque("no-redis", &[]).await.status(), 200);

    assert_eq!(idp.introspections().await, 1, "the in-process cache still serves");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["cache"], "degraded");
}

/// A Redis server of the test's own, on a free port, that the test can stop and start.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server installed (see scripts/test)");
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        eventually("the test's own redis-server accepts connections", async || {
            client.get_multiplexed_async_connection().await.is_ok()
        })
        .await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_cache_reconnects_when_redis_comes_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = OwnRedis::start(port);
    redis.wait_ready().await;
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.cache.redis_url = Some(redis.url()))
        .spawn()
        .await;
    for token in ["rc-1", "rc-2", "rc-3"] {
        idp.introspection_active(token, app.now() + 600).await;
    }
    assert_eq!(app.exchange_opaque("rc-1", &[]).await.status(), 200);

    drop(redis);
    assert_eq!(app.exchange_opaque("rc-2", &[]).await.status(), 200, "works without Redis");

    let redis = OwnRedis::start(port);
    redis.wait_ready().await;
    app.clock.advance(BACKOFF + Duration::from_secs(1));
    assert_eq!(app.exchange_opaque("rc-3", &[]).await.status(), 200);
    let mut connection = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let stored: bool = connection.exists(redis_key(app.redis_prefix(), "opaque", "rc-3")).await.unwrap();
    assert!(stored, "the new entry reached the restarted Redis");
}

#[tokio::test]
async fn how_full_the_in_process_cache_is_shows_in_metrics() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    for n in 0..3 {
        let token = format!("counted-{n}");
        idp.introspection_active(&token, app.now() + 600).await;
        assert_eq!(app.exchange_opaque(&token, &[]).await.status(), 200);
    }

    let metrics = app.metrics().await;

    assert_eq!(metrics.value("token_exchange_identity_cache_records", &[]), Some(3.0));
    let bytes = metrics.value("token_exchange_identity_cache_bytes", &[]).unwrap_or_default();
    let bound = metrics.value("token_exchange_identity_cache_max_bytes", &[]).unwrap_or_default();
    assert!(bytes > 3.0 * 100.0 && bytes < 3.0 * 1024.0, "{bytes} bytes for 3 identities");
    assert!(bound >= bytes, "bound {bound}");
}
