//! Redis beyond one server (issue #6, item 2): a Cluster of three primaries, a primary and its
//! replica behind three sentinels (failed over during a test), and a server that knows only an
//! ACL user and speaks TLS with a certificate from a private CA. scripts/test starts them all;
//! the cache contract runs on each topology too (cache_contract.rs).

use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::Value;
use token_exchange::cache::{BACKOFF, RedisKeys};
use token_exchange::config::Settings;

use crate::helpers::*;

fn on_cluster(settings: &mut Settings) {
    settings.cache.redis_url = None;
    settings.cache.redis_cluster_nodes = redis_cluster_nodes();
}

/// The sentinels' group that one test fails over, written as explicit settings.
fn behind_sentinels(settings: &mut Settings) {
    let (sentinels, _) = redis_sentinels();
    settings.cache.redis_url = None;
    settings.cache.redis_sentinels = sentinels;
    settings.cache.redis_sentinel_master = Some(redis_sentinel_failover_master());
}

/// A replica with an opaque upstream, under `prefix`, on the Redis that `topology` sets.
async fn replica(idp: &FakeIdp, prefix: &str, topology: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::builder(idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(prefix)
        .configure(topology)
        .spawn()
        .await
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Subscribers of `prefix`'s invalidation channel on the servers at `urls` (PUBSUB NUMSUB
/// counts a node's own subscribers only).
async fn subscribers(urls: &[String], prefix: &str) -> usize {
    let channel = RedisKeys::new(prefix).channel();
    let mut total = 0;
    for url in urls {
        let (_, count): (String, usize) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut connection(url).await).await.unwrap();
        total += count;
    }
    total
}

async fn wait_for_subscribers(urls: &[String], prefix: &str, wanted: usize) {
    let what = format!("{wanted} replicas follow the invalidations");
    eventually(&what, async || subscribers(urls, prefix).await >= wanted).await;
}

async fn ready_checks(app: &TestApp) -> Value {
    let body: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    body["checks"].clone()
}

// ---- Redis Cluster ----

#[tokio::test]
async fn replicas_on_a_redis_cluster_share_verdicts() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let first = replica(&idp, &prefix, on_cluster).await;
    let second = replica(&idp, &prefix, on_cluster).await;
    for i in 0..6 {
        idp.introspection_active(&format!("cl-{i}"), first.now() + 600).await;
    }

    for i in 0..6 {
        assert_eq!(first.exchange_opaque(&format!("cl-{i}"), &[]).await.status(), 200);
        assert_eq!(second.exchange_opaque(&format!("cl-{i}"), &[]).await.status(), 200);
    }

    assert_eq!(idp.introspections().await, 6, "the second replica was served from the cluster");
    assert_eq!(ready_checks(&second).await["cache"], "ok");
}

#[tokio::test]
async fn a_revocation_on_a_cluster_reaches_the_other_replica_through_pub_sub() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let first = replica(&idp, &prefix, on_cluster).await;
    let second = replica(&idp, &prefix, on_cluster).await;
    wait_for_subscribers(&redis_cluster_nodes(), &prefix, 2).await;
    idp.introspection_active("cl-rev", first.now() + 600).await;
    assert_eq!(first.exchange_opaque("cl-rev", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("cl-rev", &[]).await.status(), 200, "now in both in-process caches");

    let revoked = first.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "cl-rev")]).await;

    assert_eq!(revoked.status(), 200);
    eventually("the other replica refuses the revoked token", async || {
        second.exchange_opaque("cl-rev", &[]).await.status() == 400
    })
    .await;
    assert_eq!(idp.introspections().await, 1, "refused from what the message said, not by asking again");
}

#[tokio::test]
async fn the_entry_revocation_and_holder_of_a_token_share_one_cluster_slot() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let app = replica(&idp, &prefix, on_cluster).await;
    idp.introspection_active("cl-slot", app.now() + 600).await;
    assert_eq!(app.exchange_opaque("cl-slot", &[]).await.status(), 200);
    assert_eq!(app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "cl-slot")]).await.status(), 200);

    let keys = RedisKeys::new(&prefix);
    let digest = token_exchange::vocabulary::SubjectToken::new("cl-slot".into()).digest();
    let cluster = redis::cluster::ClusterClient::new(redis_cluster_nodes()).unwrap();
    let mut cluster = cluster.get_async_connection().await.unwrap();
    let revoked = keys.revoked(&digest);
    let holder = keys.exchanged(&digest, CLIENT_ID);
    assert!(cluster.exists::<_, bool>(&revoked).await.unwrap(), "the revocation is stored");
    assert!(cluster.exists::<_, bool>(&holder).await.unwrap(), "the holder is stored");
    let mut slots = Vec::new();
    for key in [redis_entry_key(&prefix, "opaque", "cl-slot"), revoked, holder] {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut connection(&redis_cluster_nodes()[0]).await)
            .await
            .unwrap();
        slots.push(slot);
    }
    assert!(slots.windows(2).all(|pair| pair[0] == pair[1]), "one slot: {slots:?}");
}

// ---- Redis Sentinel ----

/// Asks the first sentinel that answers.
async fn ask_sentinels<T: redis::FromRedisValue>(command: &redis::Cmd) -> T {
    let (sentinels, _) = redis_sentinels();
    for sentinel in &sentinels {
        if let Ok(client) = redis::Client::open(format!("redis://{sentinel}"))
            && let Ok(mut connection) = client.get_multiplexed_async_connection().await
            && let Ok(answer) = command.query_async(&mut connection).await
        {
            return answer;
        }
    }
    panic!("no sentinel answered {command:?}");
}

async fn sentinel_primary() -> String {
    let (host, port): (String, u16) =
        ask_sentinels(redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(redis_sentinel_failover_master()))
            .await;
    format!("redis://{host}:{port}")
}

async fn sentinel_replica() -> String {
    let replicas: Vec<std::collections::HashMap<String, String>> =
        ask_sentinels(redis::cmd("SENTINEL").arg("REPLICAS").arg(redis_sentinel_failover_master())).await;
    replicas.into_iter().find_map(|r| Some(format!("redis://{}:{}", r.get("ip")?, r.get("port")?))).unwrap()
}

async fn role(url: &str) -> String {
    let Ok(client) = redis::Client::open(url) else { return String::new() };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return String::new() };
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await.unwrap_or_default();
    reply.first().and_then(|first| redis::from_redis_value::<String>(first.clone()).ok()).unwrap_or_default()
}

/// SENTINEL FAILOVER, then waits until the sentinels name the replica, which leads. The old
/// primary goes on serving for seconds before the sentinels turn it into a replica.
async fn fail_over() -> String {
    let before = sentinel_primary().await;
    let () = ask_sentinels(redis::cmd("SENTINEL").arg("FAILOVER").arg(redis_sentinel_failover_master())).await;
    eventually("the sentinels name a new primary", async || {
        let now = sentinel_primary().await;
        (now != before && role(&now).await == "master").then_some(now)
    })
    .await
}

/// Moves `app`'s clock past the Redis backoff, so its next call tries Redis again.
fn after_backoff(app: &TestApp) {
    app.clock.advance(BACKOFF + Duration::from_secs(1));
}

#[tokio::test]
async fn exchanges_stay_right_across_a_sentinel_failover() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let first = replica(&idp, &prefix, behind_sentinels).await;
    let second = replica(&idp, &prefix, behind_sentinels).await;
    wait_for_subscribers(&[sentinel_primary().await], &prefix, 2).await;
    for token in ["fo-1", "fo-2", "fo-3"] {
        idp.introspection_active(token, first.now() + 600).await;
    }
    assert_eq!(first.exchange_opaque("fo-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("fo-1", &[]).await.status(), 200, "from Redis, and now in process");
    assert_eq!(idp.introspections().await, 1);
    let entry = redis_entry_key(&prefix, "opaque", "fo-1");
    let replica_url = sentinel_replica().await;
    eventually("the entry reached the replica", async || {
        connection(&replica_url).await.exists::<_, bool>(&entry).await.unwrap()
    })
    .await;

    let new_primary = fail_over().await;

    assert_eq!(first.exchange_opaque("fo-2", &[]).await.status(), 200, "answered while Redis moves");
    let revoked = redis_revoked_key(&prefix, "fo-1");
    eventually("a revocation reaches the new primary", async || {
        after_backoff(&first);
        first.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "fo-1")]).await.status() == 200
            && connection(&new_primary).await.exists::<_, bool>(&revoked).await.unwrap()
    })
    .await;
    eventually("the other replica refuses the revoked token", async || {
        after_backoff(&second);
        second.exchange_opaque("fo-1", &[]).await.status() == 400
    })
    .await;
    assert_eq!(first.exchange_opaque("fo-3", &[]).await.status(), 200);
    let late = replica(&idp, &prefix, behind_sentinels).await;
    let calls = idp.introspections().await;
    assert_eq!(late.exchange_opaque("fo-3", &[]).await.status(), 200);
    assert_eq!(
        idp.introspections().await,
        calls,
        "a replica started after the failover is served from the new primary"
    );
    assert_oauth_error(late.exchange_opaque("fo-1", &[]).await, 400, "invalid_request").await;
}

// ---- ACL and TLS ----

fn with_acl_user(password: &str) -> impl FnOnce(&mut Settings) {
    let (url, user, _) = redis_acl();
    let password = password.to_owned();
    move |settings| {
        settings.cache.redis_url = Some(url);
        settings.cache.redis_username = Some(user);
        settings.cache.redis_password = Some(token_exchange::vocabulary::ClientSecret::new(password));
    }
}

#[tokio::test]
async fn an_acl_user_and_its_password_reach_a_redis_that_refuses_the_default_user() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let (_, _, password) = redis_acl();
    let first = replica(&idp, &prefix, with_acl_user(&password)).await;
    let second = replica(&idp, &prefix, with_acl_user(&password)).await;
    idp.introspection_active("acl-1", first.now() + 600).await;

    assert_eq!(first.exchange_opaque("acl-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("acl-1", &[]).await.status(), 200);

    assert_eq!(idp.introspections().await, 1, "shared through Redis");
    assert_eq!(ready_checks(&first).await["cache"], "ok");
}

#[tokio::test]
async fn a_wrong_acl_password_degrades_the_cache_and_not_the_service() {
    let idp = FakeIdp::start().await;
    let app = replica(&idp, &random_prefix(), with_acl_user("not-the-password")).await;
    idp.introspection_active("acl-2", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("acl-2", &[]).await.status(), 200);

    assert_eq!(ready_checks(&app).await["cache"], "degraded");
}

fn over_tls(ca: bool) -> impl FnOnce(&mut Settings) {
    let (url, ca_file) = redis_tls();
    let (_, user, password) = redis_acl();
    move |settings| {
        settings.cache.redis_url = Some(url);
        settings.cache.redis_username = Some(user);
        settings.cache.redis_password = Some(token_exchange::vocabulary::ClientSecret::new(password));
        settings.cache.redis_tls_ca_file = ca.then_some(ca_file);
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_certificate_from_a_private_ca_is_shared() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let first = replica(&idp, &prefix, over_tls(true)).await;
    let second = replica(&idp, &prefix, over_tls(true)).await;
    idp.introspection_active("tls-1", first.now() + 600).await;

    assert_eq!(first.exchange_opaque("tls-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("tls-1", &[]).await.status(), 200);

    assert_eq!(idp.introspections().await, 1, "shared through Redis over TLS");
    assert_eq!(ready_checks(&first).await["cache"], "ok");
}

#[tokio::test]
async fn a_redis_certificate_from_an_unknown_ca_is_refused() {
    let idp = FakeIdp::start().await;
    let app = replica(&idp, &random_prefix(), over_tls(false)).await;
    idp.introspection_active("tls-2", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("tls-2", &[]).await.status(), 200, "served without the cache");

    assert_eq!(ready_checks(&app).await["cache"], "degraded", "no connection to a server we cannot verify");
}

// ---- Upgrade from the layout before hash tags ----

#[tokio::test]
async fn a_revocation_recorded_before_the_upgrade_is_still_honoured() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let app = replica(&idp, &prefix, |_| {}).await;
    idp.introspection_active("old-rev", app.now() + 600).await;
    let old_key = format!("{prefix}:v1:revoked:{}", sha256_hex("old-rev"));
    let () = redis_connection().await.set_ex(&old_key, app.now() + 600, 600).await.unwrap();

    assert_oauth_error(app.exchange_opaque("old-rev", &[]).await, 400, "invalid_request").await;

    assert_eq!(idp.introspections().await, 0, "refused before asking the upstream");
}

#[tokio::test]
async fn a_client_that_exchanged_a_token_before_the_upgrade_may_still_revoke_it() {
    let idp = FakeIdp::start().await;
    let prefix = random_prefix();
    let app = replica(&idp, &prefix, |_| {}).await;
    let old_key = format!("{prefix}:v1:exchanged:{}:{CLIENT_ID}", sha256_hex("old-holder"));
    let () = redis_connection().await.set_ex(&old_key, 1, 600).await.unwrap();

    let response = app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "old-holder")]).await;

    assert_eq!(response.status(), 200);
    let stored = redis_connection().await.exists::<_, bool>(redis_revoked_key(&prefix, "old-holder")).await.unwrap();
    assert!(stored, "the revocation was recorded, not ignored");
}

// ---- Configuration ----

#[test]
fn redis_settings_that_cannot_work_are_refused_naming_their_key() {
    let refusal = |change: &dyn Fn(&mut Settings)| {
        let mut settings = Settings::default();
        change(&mut settings);
        settings.validate().err().map(|error| error.to_string()).unwrap_or_default()
    };
    let two_topologies = refusal(&|s| {
        s.cache.redis_url = Some("redis://a:6379".into());
        s.cache.redis_cluster_nodes = vec!["redis://b:6379".into()];
    });
    assert!(two_topologies.contains("cache.redis_url"), "{two_topologies}");
    let no_master = refusal(&|s| s.cache.redis_sentinels = vec!["a:26379".into()]);
    assert!(no_master.contains("cache.redis_sentinel_master"), "{no_master}");
    let url_without_master = refusal(&|s| s.cache.redis_url = Some("redis+sentinel://a:26379".into()));
    assert!(url_without_master.contains("cache.redis_url"), "{url_without_master}");
    let not_redis = refusal(&|s| s.cache.redis_url = Some("http://a:6379".into()));
    assert!(not_redis.contains("cache.redis_url"), "{not_redis}");
    let braces = refusal(&|s| s.cache.redis_prefix = "te-{a}".into());
    assert!(braces.contains("cache.redis_prefix"), "{braces}");
    let missing_ca = refusal(&|s| {
        s.cache.redis_url = Some("rediss://a:6379".into());
        s.cache.redis_tls_ca_file = Some("/nonexistent/ca.pem".into());
    });
    assert!(missing_ca.contains("cache.redis_tls_ca_file"), "{missing_ca}");
}
