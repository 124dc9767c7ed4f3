//! RFC 7009 revocation and the admin purge, across replicas sharing one Redis.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

async fn eventually_refused(app: &TestApp, token: &str) {
    eventually("the revoked token is refused", async || app.exchange_opaque(token, &[]).await.status() == 400).await;
}

#[tokio::test]
async fn revocation_drops_the_token_on_two_replicas_sharing_redis() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;
    let second = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(first.redis_prefix())
        .spawn()
        .await;
    idp.introspection_active("rev-1", first.now() + 600).await;
    assert_eq!(first.exchange_opaque("rev-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("rev-1", &[]).await.status(), 200, "now in both in-process caches");

    let response = first.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "rev-1")]).await;

    assert_eq!(response.status(), 200);
    assert_oauth_error(first.exchange_opaque("rev-1", &[]).await, 400, "invalid_request").await;
    eventually_refused(&second, "rev-1").await;
    assert_eq!(idp.introspections().await, 1, "refused from the cache, not by asking again");
}

#[tokio::test]
async fn revoking_an_unknown_token_is_ok() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).with_redis().spawn().await;

    let response = app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "never-seen")]).await;

    assert_eq!(response.status(), 200, "RFC 7009 §2.2");
}

#[tokio::test]
async fn revocation_requires_client_authentication() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.post_form_as("/revoke", CLIENT_ID, "wrong", &[("token", "t")]).await;

    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn an_admin_purge_of_a_subject_makes_every_replica_ask_the_upstream_again() {
    let idp = FakeIdp::start().await;
    let mut admin = client("ops", "ops-secret");
    admin.admin = true;
    let first = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis()
        .configure(|s| s.clients.push(admin))
        .spawn()
        .await;
    let second = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(first.redis_prefix())
        .spawn()
        .await;
    idp.introspection_active("purge-1", first.now() + 600).await;
    assert_eq!(first.exchange_opaque("purge-1", &[]).await.status(), 200);
    assert_eq!(second.exchange_opaque("purge-1", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 1);

    let response = first.post_form_as("/admin/purge", "ops", "ops-secret", &[("sub", "opaque-user")]).await;

    assert_eq!(response.status(), 200);
    let purged: Value = response.json().await.unwrap();
    assert!(purged["purged"].as_u64().unwrap() >= 2, "local and shared entries: {purged}");
    eventually("the second replica asks the upstream again", async || {
        assert_eq!(second.exchange_opaque("purge-1", &[]).await.status(), 200);
        idp.introspections().await >= 2
    })
    .await;
}

#[tokio::test]
async fn purge_is_refused_to_clients_without_admin_rights() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.post_form_as("/admin/purge", CLIENT_ID, CLIENT_SECRET, &[("sub", "x")]).await;

    assert_oauth_error(response, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn a_revocation_wins_over_an_upstream_answer_still_in_flight() {
    let idp = FakeIdp::start().await;
    // An admin client may revoke any token (RFC 7009 §2.1), also one whose first exchange is
    // still in flight.
    let mut admin = client("ops", "ops-secret");
    admin.admin = true;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| s.clients.push(admin))
        .spawn()
        .await;
    let slow = serde_json::json!({"active": true, "sub": "u", "exp": app.now() + 600});
    idp.introspection_answers(
        "race-1",
        wiremock::ResponseTemplate::new(200).set_body_json(slow).set_delay(Duration::from_millis(500)),
    )
    .await;

    let in_flight = app.exchange_opaque("race-1", &[]);
    let revocation = async {
        eventually("the introspection is in flight", async || idp.introspections().await == 1).await;
        app.post_form_as("/revoke", "ops", "ops-secret", &[("token", "race-1")]).await
    };
    let (exchanged, revoked) = tokio::join!(in_flight, revocation);

    assert_eq!(revoked.status(), 200);
    assert_oauth_error(exchanged, 400, "invalid_request").await;
    assert_oauth_error(app.exchange_opaque("race-1", &[]).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_revocation_outlives_the_cached_entry_it_replaced() {
    let idp = FakeIdp::start().await;
    let mut upstream = idp.opaque_settings("auth0", false, true);
    upstream.userinfo_ttl = Duration::from_secs(60);
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    idp.userinfo_answers(
        "still-ok-upstream",
        wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"sub": "u"})),
    )
    .await;
    assert_eq!(app.exchange_opaque("still-ok-upstream", &[]).await.status(), 200);

    app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", "still-ok-upstream")]).await;
    app.clock.advance(Duration::from_secs(120));

    assert_oauth_error(app.exchange_opaque("still-ok-upstream", &[]).await, 400, "invalid_request").await;
}
