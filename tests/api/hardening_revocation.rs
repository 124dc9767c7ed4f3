//! Security review, revocation (RFC 7009): a revocation is durable, in Redis, for as long as
//! the token could be presented, and only a client that exchanged a token (or an admin client)
//! may revoke it.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// An app with the introspection upstream, on Redis under `prefix`.
fn opaque_app_on(idp: &FakeIdp, prefix: &str) -> TestAppBuilder {
    TestApp::builder(idp).with_opaque_upstream(idp.introspection_upstream()).with_redis_prefix(prefix)
}

/// A client with admin rights, which RFC 7009 §2.1 lets this service trust with any token.
fn admin_client() -> token_exchange::config::ClientSettings {
    let mut admin = client("ops", "ops-secret");
    admin.admin = true;
    admin
}

async fn revoke_as(app: &TestApp, client_id: &str, secret: &str, token: &str) -> reqwest::Response {
    app.post_form_as("/revoke", client_id, secret, &[("token", token)]).await
}

fn revoked_key(app: &TestApp, token: &str) -> String {
    redis_revoked_key(app.redis_prefix(), token)
}

// ---- Finding 1 (high): a revocation is read back from Redis, not only written there ----

#[tokio::test]
async fn a_replica_started_after_a_revocation_refuses_the_token_without_asking_the_upstream() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    idp.introspection_active("durable-1", first.now() + 600).await;
    assert_eq!(first.exchange_opaque("durable-1", &[]).await.status(), 200);
    assert_eq!(revoke_as(&first, CLIENT_ID, CLIENT_SECRET, "durable-1").await.status(), 200);

    // Started after the revocation: it never received the invalidation message.
    let late = opaque_app_on(&idp, first.redis_prefix()).spawn().await;

    assert_oauth_error(late.exchange_opaque("durable-1", &[]).await, 400, "invalid_request").await;
    assert_oauth_error(late.exchange_opaque("durable-1", &[]).await, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 1, "the new replica did not ask the upstream about a revoked token");
}

#[tokio::test]
async fn a_revoked_token_stays_refused_after_a_restart() {
    let idp = FakeIdp::start().await;
    let before = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .with_postgres()
        .spawn()
        .await;
    let prefix = before.redis_prefix().to_owned();
    let database = before.database();
    idp.introspection_active("durable-2", before.now() + 600).await;
    assert_eq!(before.exchange_opaque("durable-2", &[]).await.status(), 200);
    assert_eq!(revoke_as(&before, CLIENT_ID, CLIENT_SECRET, "durable-2").await.status(), 200);
    // The process is gone, and its in-process cache with it; the test never talks to it again.
    drop(before);

    let restarted = opaque_app_on(&idp, &prefix).with_database(database).spawn().await;

    assert_oauth_error(restarted.exchange_opaque("durable-2", &[]).await, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 1, "refused from the shared revocation, not by asking again");
}

#[tokio::test]
async fn a_revoked_jwt_stays_refused_past_max_ttl_until_its_own_expiry() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_redis().spawn().await;
    let lifetime = Duration::from_secs(3 * 3600);
    let lifetime_secs = i64::try_from(lifetime.as_secs()).unwrap();
    let exp = first.now() + lifetime_secs;
    assert!(lifetime > first.settings.cache.max_ttl, "the token outlives max_ttl");
    let revoked = idp.token_with(first.now(), json!({"exp": exp, "jti": "revoked"}));
    let untouched = idp.token_with(first.now(), json!({"exp": exp, "jti": "untouched"}));
    // Exchanged by the client, so the client may revoke it (RFC 7009 §2.1).
    assert_eq!(first.exchange(&revoked, &[]).await.status(), 200);

    assert_eq!(revoke_as(&first, CLIENT_ID, CLIENT_SECRET, &revoked).await.status(), 200);

    let mut redis = redis_connection().await;
    let ttl: i64 = redis::cmd("TTL").arg(revoked_key(&first, &revoked)).query_async(&mut redis).await.unwrap();
    assert!(
        ttl > lifetime_secs - 60 && ttl <= lifetime_secs,
        "kept in Redis until the token's exp, {lifetime_secs} s away: TTL {ttl}"
    );

    // A replica that never saw the token, past the longest time anything about it is cached.
    let late = TestApp::builder(&idp).with_redis_prefix(first.redis_prefix()).spawn().await;
    late.clock.advance(late.settings.cache.max_ttl + Duration::from_secs(60));
    assert_eq!(late.exchange(&untouched, &[]).await.status(), 200, "an unrevoked twin is still valid then");
    assert_oauth_error(late.exchange(&revoked, &[]).await, 400, "invalid_request").await;

    // Past its exp (and any leeway), the revocation may go: the token is expired anyway.
    late.clock.advance(Duration::from_secs(u64::try_from(exp - late.now()).unwrap()) + Duration::from_secs(600));
    let body = assert_oauth_error(late.exchange(&revoked, &[]).await, 400, "invalid_request").await;
    assert!(
        body["error_description"].as_str().unwrap().contains("expired"),
        "past its exp the token is expired: {body}"
    );
}

// ---- Finding 2 (medium): only the client that exchanged a token, or an admin, revokes it ----

#[tokio::test]
async fn a_client_cannot_revoke_a_token_it_never_exchanged() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.clients.push(client("intruder", "intruder-secret")))
        .spawn()
        .await;
    idp.introspection_active("victim-1", app.now() + 600).await;
    assert_eq!(app.exchange_opaque("victim-1", &[]).await.status(), 200);

    let response = revoke_as(&app, "intruder", "intruder-secret", "victim-1").await;

    assert_eq!(response.status(), 200, "RFC 7009 §2.2: the answer does not tell");
    assert_eq!(app.exchange_opaque("victim-1", &[]).await.status(), 200, "the holder can still exchange it");
    assert!(redis_keys(&revoked_key(&app, "victim-1")).await.is_empty(), "no revocation was recorded");
}

#[tokio::test]
async fn revoking_tokens_never_seen_writes_nothing_to_redis() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let tokens: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();

    for token in &tokens {
        assert_eq!(revoke_as(&app, CLIENT_ID, CLIENT_SECRET, token).await.status(), 200, "RFC 7009 §2.2");
    }

    let revoked = redis_keys(&format!("{}:*revoked*", app.redis_prefix())).await;
    assert!(revoked.is_empty(), "no revocation keys: {revoked:?}");
    let all = redis_keys(&format!("{}:*", app.redis_prefix())).await;
    for token in &tokens {
        let digest = sha256_hex(token);
        assert!(!all.iter().any(|key| key.contains(&digest)), "nothing about the token was written: {all:?}");
    }
}

#[tokio::test]
async fn an_admin_client_may_revoke_a_token_it_never_exchanged() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.clients.push(admin_client()))
        .spawn()
        .await;
    idp.introspection_active("stolen-1", app.now() + 600).await;
    assert_eq!(app.exchange_opaque("stolen-1", &[]).await.status(), 200);

    assert_eq!(revoke_as(&app, "ops", "ops-secret", "stolen-1").await.status(), 200);

    assert_oauth_error(app.exchange_opaque("stolen-1", &[]).await, 400, "invalid_request").await;
    assert_eq!(redis_keys(&revoked_key(&app, "stolen-1")).await.len(), 1, "the revocation is shared");
}

#[tokio::test]
async fn the_right_to_revoke_is_shared_by_replicas() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let second = opaque_app_on(&idp, first.redis_prefix()).spawn().await;
    idp.introspection_active("shared-1", first.now() + 600).await;
    assert_eq!(first.exchange_opaque("shared-1", &[]).await.status(), 200);

    // The second replica never saw the token, nor that this client exchanged it.
    let response = revoke_as(&second, CLIENT_ID, CLIENT_SECRET, "shared-1").await;

    assert_eq!(response.status(), 200);
    assert_eq!(redis_keys(&revoked_key(&first, "shared-1")).await.len(), 1, "the revocation was recorded");
    assert_oauth_error(second.exchange_opaque("shared-1", &[]).await, 400, "invalid_request").await;
    eventually("the first replica refuses the token", async || {
        first.exchange_opaque("shared-1", &[]).await.status() == 400
    })
    .await;
    assert_oauth_error(first.exchange_opaque("shared-1", &[]).await, 400, "invalid_request").await;
}
