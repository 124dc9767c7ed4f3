//! One upstream call per token across the fleet: replicas sharing a Redis take a lease before
//! asking the upstream about an opaque token, and the others wait for the verdict.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const SLOW_UPSTREAM: Duration = Duration::from_millis(400);

/// `count` replicas on one Redis prefix, each with `idp`'s introspection as its opaque upstream.
async fn replicas(idp: &FakeIdp, count: usize) -> Vec<TestApp> {
    let prefix = random_prefix();
    let mut apps = Vec::new();
    for _ in 0..count {
        let app = TestApp::builder(idp)
            .with_opaque_upstream(idp.introspection_upstream())
            .with_redis_prefix(&prefix)
            .configure(|s| s.upstream_http.timeout = Duration::from_secs(2))
            .spawn()
            .await;
        apps.push(app);
    }
    apps
}

/// Introspection answers for every token, after `delay`, with `body`.
async fn slow_introspection(idp: &FakeIdp, delay: Duration, body: serde_json::Value) {
    idp.introspection_answers_all(ResponseTemplate::new(200).set_delay(delay).set_body_json(body)).await;
}

/// `per_replica` concurrent exchanges of `token` at each replica; their HTTP statuses.
async fn burst(apps: &[TestApp], token: &str, per_replica: usize) -> Vec<u16> {
    let requests = apps.iter().flat_map(|app| (0..per_replica).map(move |_| app.exchange_opaque(token, &[])));
    join_all(requests).await.into_iter().map(|r| r.status().as_u16()).collect()
}

#[tokio::test]
async fn concurrent_first_exchanges_of_one_token_on_three_replicas_make_one_upstream_call() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 3).await;
    let exp = apps[0].now() + 600;
    slow_introspection(&idp, SLOW_UPSTREAM, json!({"active": true, "sub": "fleet-user", "exp": exp})).await;

    let statuses = burst(&apps, "fleet-token", 20).await;

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.introspections().await, 1);
    let led: f64 = join_all(apps.iter().map(|a| a.metrics()))
        .await
        .iter()
        .map(|m| m.value("token_exchange_fleet_single_flight_total", &[("outcome", "led")]).unwrap_or(0.0))
        .sum();
    assert_eq!(led, 1.0, "one replica led");
}

#[tokio::test]
async fn a_definitive_negative_is_shared_by_the_fleet_the_same_way() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 3).await;
    slow_introspection(&idp, SLOW_UPSTREAM, json!({"active": false})).await;

    let statuses = burst(&apps, "inactive-token", 10).await;

    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn jwts_are_verified_by_each_replica_without_a_lease() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 2).await;
    let token = idp.token(apps[0].now());

    for app in &apps {
        assert_eq!(app.exchange(&token, &[]).await.status(), 200);
    }

    let leases = redis_keys(&format!("{}:*lease*", apps[0].redis_prefix())).await;
    assert!(leases.is_empty(), "offline verification needs no coordination: {leases:?}");
}

#[tokio::test]
async fn a_lease_held_past_its_time_makes_a_waiter_answer_503_instead_of_hanging() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 1).await;
    idp.introspection_active("stuck-token", apps[0].now() + 600).await;
    // A holder that never answers and whose lease does not expire in time (a skewed clock, a
    // stuck process): the wait is still bounded.
    let mut redis = redis_connection().await;
    let lease = lease_key(apps[0].redis_prefix(), "opaque", "stuck-token");
    let () = redis::cmd("SET")
        .arg(&lease)
        .arg("another-replica")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    let waited = real_time();

    let response = apps[0].exchange_opaque("stuck-token", &[]).await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(waited.elapsed() < Duration::from_secs(10), "bounded by the lease: {:?}", waited.elapsed());
    assert_eq!(idp.introspections().await, 0);
}

#[tokio::test]
async fn a_leader_that_fails_gives_the_lease_back_and_a_waiter_asks_at_once() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 2).await;
    let exp = apps[0].now() + 600;
    Mock::given(method("POST"))
        .and(path(INTROSPECT_PATH))
        .respond_with(ResponseTemplate::new(503).set_delay(SLOW_UPSTREAM))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    slow_introspection(&idp, Duration::ZERO, json!({"active": true, "sub": "u", "exp": exp})).await;

    let (first, second) = tokio::join!(apps[0].exchange_opaque("flaky-token", &[]), async {
        real_pause(SLOW_UPSTREAM / 4).await;
        apps[1].exchange_opaque("flaky-token", &[]).await
    });

    assert_eq!(first.status(), 503, "the leader's own call failed");
    assert_eq!(second.status(), 200, "the waiter took over without waiting out the lease");
    assert_eq!(idp.introspections().await, 2);
    let took_over =
        apps[1].metrics().await.value("token_exchange_fleet_single_flight_total", &[("outcome", "took_over")]);
    assert_eq!(took_over, Some(1.0));
}

#[tokio::test]
async fn with_redis_down_each_replica_still_asks_once_on_its_own() {
    let idp = FakeIdp::start().await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let app = TestApp::builder(&idp)
            .with_opaque_upstream(idp.introspection_upstream())
            .configure(|s| s.cache.redis_url = Some(format!("redis://127.0.0.1:{closed_port}")))
            .spawn()
            .await;
        apps.push(app);
    }
    let exp = apps[0].now() + 600;
    slow_introspection(&idp, SLOW_UPSTREAM, json!({"active": true, "sub": "u", "exp": exp})).await;

    let statuses = burst(&apps, "lonely-token", 10).await;

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.introspections().await, 2, "one call per process");
}

/// A replica process killed while it asks the upstream: its lease expires, and a replica
/// that was waiting for its answer takes over and answers.
#[tokio::test]
async fn a_leader_that_dies_mid_call_is_replaced_when_its_lease_expires() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let survivor = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(&prefix)
        // A lease of 6 s (the leader's is 4 s): a waiter outwaits the lease of a leader that
        // started before it, whatever the scheduling.
        .configure(|s| {
            s.upstream_http.connect_timeout = Duration::from_millis(500);
            s.upstream_http.timeout = Duration::from_secs(5);
        })
        .spawn()
        .await;
    let exp = survivor.now() + 600;
    let body = json!({"active": true, "sub": "u", "exp": exp});
    Mock::given(method("POST"))
        .and(path(INTROSPECT_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)).set_body_json(body.clone()))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    slow_introspection(&idp, Duration::ZERO, body).await;
    let leader = leader_process(&idp, &prefix);
    let asked = tokio::spawn(exchange_orphan(format!("http://127.0.0.1:{}/token", leader.port)));
    eventually("the leader asks the upstream", async || (idp.introspections().await == 1).then_some(())).await;

    let waiting = tokio::spawn(exchange_orphan(survivor.url("/token")));
    real_pause(Duration::from_millis(200)).await;
    leader.stop(false);
    let _ = asked.await;

    assert_eq!(waiting.await.unwrap().map(|r| r.status()).unwrap(), 200);
    assert_eq!(idp.introspections().await, 2, "the dead leader's call, then the survivor's");
    let took_over =
        survivor.metrics().await.value("token_exchange_fleet_single_flight_total", &[("outcome", "took_over")]);
    assert_eq!(took_over, Some(1.0));
}

/// The exchange of the token whose leader is killed, at the `/token` of `url`.
async fn exchange_orphan(url: String) -> reqwest::Result<reqwest::Response> {
    let form =
        [("grant_type", TOKEN_EXCHANGE), ("subject_token", "orphan-token"), ("subject_token_type", ACCESS_TOKEN)];
    reqwest::Client::new().post(url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).form(&form).send().await
}

/// `token-exchange serve` on the shared Redis prefix, with `idp`'s introspection and a lease of
/// 4 s (connect 0.5 s, call 3 s, margin 0.5 s).
fn leader_process(idp: &FakeIdp, prefix: &str) -> ServerProcess {
    let data = tempfile::tempdir().unwrap().keep();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [storage]\ndatabase_url = \"sqlite://{data}/leader.db\"\n\
         [upstream_http]\nconnect_timeout = \"500ms\"\ntimeout = \"3s\"\n\
         [cache]\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n\
         [[upstreams]]\nname = \"opaque\"\nissuer = \"{issuer}/opaque\"\n\
         introspection_endpoint = \"{issuer}{INTROSPECT_PATH}\"\nclient_id = \"{UPSTREAM_CLIENT_ID}\"\n\
         client_secret = \"{UPSTREAM_CLIENT_SECRET}\"\ndefault_for_opaque = true\n\
         [[clients]]\nclient_id = \"{CLIENT_ID}\"\nsecret_hash = \"{hash}\"\n",
        data = data.display(),
        redis = redis_url(),
        issuer = idp.issuer(),
        hash = secret_hash(CLIENT_SECRET),
    );
    let mut leader = ServerProcess::serve(&kept_config_file(&config), &[]);
    leader.drain_output();
    leader
}

#[expect(clippy::disallowed_methods, reason = "measures a real wait; leases expire in Redis's time")]
fn real_time() -> std::time::Instant {
    std::time::Instant::now()
}

#[expect(clippy::disallowed_methods, reason = "paces real requests; leases expire in Redis's time")]
async fn real_pause(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::test]
async fn a_redis_that_forgot_the_release_script_is_sent_it_again_without_an_error() {
    let idp = FakeIdp::start().await;
    let apps = replicas(&idp, 1).await;
    idp.introspection_answers("script-token", ResponseTemplate::new(503)).await;
    let mut redis = redis_connection().await;
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut redis).await.unwrap();

    // The upstream fails, so the leader gives its lease back through the script.
    assert_eq!(apps[0].exchange_opaque("script-token", &[]).await.status(), 503);

    let metrics = apps[0].metrics().await;
    assert_eq!(metrics.total("token_exchange_redis_errors_total"), 0.0, "NOSCRIPT is not a Redis failure");
    let lease = lease_key(apps[0].redis_prefix(), "opaque", "script-token");
    let held: bool = redis::cmd("EXISTS").arg(&lease).query_async(&mut redis).await.unwrap();
    assert!(!held, "the lease was given back");
}
