//! `[rate_limits]`: per client on `/token` and `/revoke`, per trusted proxy on `/forward-auth`,
//! and per peer address for failed client authentications. governor measures real time, so
//! every limit here is per hour: nothing refills while a test runs, and nothing sleeps.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use token_exchange::config::{Rate, Settings};

use crate::helpers::*;

const OTHER_ID: &str = "other-gateway";
const OTHER_SECRET: &str = "other-gateway-secret";

fn per_hour(count: u32) -> Rate {
    Rate::new(count, Duration::from_secs(3600))
}

/// A second registered client, to show that one client's limit is its own.
fn with_other_client(settings: &mut Settings) {
    settings.clients.push(client(OTHER_ID, OTHER_SECRET));
}

/// The `Retry-After` of a response, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response.headers().get(RETRY_AFTER).expect("a Retry-After header");
    value.to_str().unwrap().parse().expect("Retry-After in whole seconds")
}

async fn assert_slow_down(response: reqwest::Response) -> u64 {
    let wait = retry_after(&response);
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    let body = assert_oauth_error(response, 429, "slow_down").await;
    assert!(body["error_description"].is_string(), "{body}");
    wait
}

#[tokio::test]
async fn a_client_over_its_token_limit_gets_429_slow_down_and_other_clients_do_not() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(with_other_client)
        .configure(|s| s.rate_limits.token_per_client = per_hour(2))
        .spawn()
        .await;
    let subject = idp.token(app.now());

    for _ in 0..2 {
        assert_eq!(app.exchange(&subject, &[]).await.status(), 200);
    }
    let refused = app.exchange(&subject, &[]).await;
    let wait = assert_slow_down(refused).await;
    assert!(wait > 60, "one request back per half hour, not {wait}s");

    assert_eq!(exchange_as(&app.http, &app, &idp, OTHER_ID, OTHER_SECRET).await.status(), 200);
    let metrics = app.metrics().await;
    let limited = [("endpoint", "token"), ("scope", "client")];
    assert_eq!(metrics.value("token_exchange_rate_limited_total", &limited), Some(1.0), "{metrics}");
    let refusals = [("outcome", "slow_down"), ("client", CLIENT_ID)];
    assert_eq!(metrics.value("token_exchange_exchanges_total", &refusals), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn a_burst_above_the_rate_is_allowed_once() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            s.rate_limits.token_per_client = per_hour(1);
            s.rate_limits.token_burst = Some(3);
        })
        .spawn()
        .await;
    let subject = idp.token(app.now());

    for _ in 0..3 {
        assert_eq!(app.exchange(&subject, &[]).await.status(), 200);
    }
    assert_slow_down(app.exchange(&subject, &[]).await).await;
}

#[tokio::test]
async fn a_client_over_its_revoke_limit_gets_429_and_other_clients_do_not() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(with_other_client)
        .configure(|s| s.rate_limits.revoke_per_client = per_hour(1))
        .spawn()
        .await;
    let revoke = |client_id, secret| app.post_form_as("/revoke", client_id, secret, &[("token", "some-token")]);

    assert_eq!(revoke(CLIENT_ID, CLIENT_SECRET).await.status(), 200);
    assert_slow_down(revoke(CLIENT_ID, CLIENT_SECRET).await).await;
    assert_eq!(revoke(OTHER_ID, OTHER_SECRET).await.status(), 200);
    // The token endpoint keeps its own count.
    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);

    let metrics = app.metrics().await;
    let limited = [("endpoint", "revoke"), ("scope", "client")];
    assert_eq!(metrics.value("token_exchange_rate_limited_total", &limited), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn a_proxy_over_its_forward_auth_limit_gets_429_with_an_empty_body_and_other_proxies_do_not() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.rate_limits.forward_auth_per_peer = per_hour(2)).spawn().await;
    let (first, second) = (from_peer(1), from_peer(2));
    let decide = |http: &reqwest::Client| http.get(app.url("/forward-auth")).send();

    for _ in 0..2 {
        // No route matches: decided (403) within the limit.
        assert_eq!(decide(&first).await.unwrap().status(), 403);
    }
    let refused = decide(&first).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) > 60);
    assert!(refused.headers().get("www-authenticate").is_none());
    assert_eq!(refused.headers().get("cache-control").unwrap(), "no-store");
    assert!(refused.bytes().await.unwrap().is_empty(), "an empty body");

    assert_eq!(decide(&second).await.unwrap().status(), 403, "another proxy has a limit of its own");
    let metrics = app.metrics().await;
    let limited = [("endpoint", "forward_auth"), ("scope", "peer")];
    assert_eq!(metrics.value("token_exchange_rate_limited_total", &limited), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn a_peer_over_its_failed_authentication_limit_is_cut_off_and_another_peer_is_not() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(with_other_client)
        .configure(|s| {
            s.rate_limits.unauthenticated_failures_per_peer = per_hour(3);
            // The per-client lockout alone would not stop a peer that sprays client ids.
            s.server.max_failed_client_auth_per_minute = 100;
        })
        .spawn()
        .await;
    let (attacker, neighbour) = (from_peer(3), from_peer(4));

    // Failures under several client ids (each a new secret, so each is a real verification).
    for (i, client_id) in [CLIENT_ID, OTHER_ID, "nobody"].into_iter().enumerate() {
        let wrong = format!("wrong-{i}");
        assert_eq!(exchange_as(&attacker, &app, &idp, client_id, &wrong).await.status(), 401);
    }
    // The fourth failure is over the limit: refused, and the peer is cut off.
    assert_slow_down(exchange_as(&attacker, &app, &idp, CLIENT_ID, "wrong-3").await).await;
    // From now on before any verification, even with the right secret, on /revoke too.
    let wait = assert_slow_down(exchange_as(&attacker, &app, &idp, CLIENT_ID, CLIENT_SECRET).await).await;
    assert!(wait > 60, "{wait}");
    let revoke = attacker
        .post(app.url("/revoke"))
        .header(AUTHORIZATION, basic(OTHER_ID, OTHER_SECRET))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=some-token")
        .send()
        .await
        .unwrap();
    assert_slow_down(revoke).await;

    // Another peer, and the same clients from it, are unaffected.
    assert_eq!(exchange_as(&neighbour, &app, &idp, CLIENT_ID, CLIENT_SECRET).await.status(), 200);
    assert_eq!(exchange_as(&neighbour, &app, &idp, "nobody", "wrong").await.status(), 401);

    let metrics = app.metrics().await;
    let on_token = [("endpoint", "token"), ("scope", "unauthenticated_peer")];
    let on_revoke = [("endpoint", "revoke"), ("scope", "unauthenticated_peer")];
    assert_eq!(metrics.value("token_exchange_rate_limited_total", &on_token), Some(2.0), "{metrics}");
    assert_eq!(metrics.value("token_exchange_rate_limited_total", &on_revoke), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn limits_set_to_zero_are_off_and_export_no_series() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            s.rate_limits.token_per_client = Rate::OFF;
            s.rate_limits.revoke_per_client = Rate::OFF;
            s.rate_limits.forward_auth_per_peer = Rate::OFF;
            s.rate_limits.unauthenticated_failures_per_peer = Rate::OFF;
            s.server.max_failed_client_auth_per_minute = 1000;
        })
        .spawn()
        .await;
    let subject = idp.token(app.now());

    for i in 0..30 {
        assert_eq!(app.exchange(&subject, &[]).await.status(), 200);
        let wrong = format!("wrong-{i}");
        assert_eq!(app.post_form_as("/revoke", "nobody", &wrong, &[("token", "t")]).await.status(), 401);
        assert_eq!(app.http.get(app.url("/forward-auth")).send().await.unwrap().status(), 403);
    }
    let metrics = app.metrics().await;
    assert_eq!(metrics.total("token_exchange_rate_limited_total"), 0.0, "{metrics}");
    assert!(!metrics.0.contains("token_exchange_rate_limited_total"), "no series for limits that are off");
}

#[tokio::test]
async fn the_default_limits_are_in_force_at_zero_and_do_not_limit_ordinary_traffic() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token(app.now());

    for _ in 0..50 {
        assert_eq!(app.exchange(&subject, &[]).await.status(), 200);
    }
    let metrics = app.metrics().await;
    for (endpoint, scope) in
        [("token", "client"), ("revoke", "client"), ("forward_auth", "peer"), ("token", "unauthenticated_peer")]
    {
        let labels = [("endpoint", endpoint), ("scope", scope)];
        assert_eq!(metrics.value("token_exchange_rate_limited_total", &labels), Some(0.0), "{endpoint} {scope}");
    }
}

#[test]
fn rates_are_read_from_text_and_zero_or_off_switches_a_limit_off() {
    let dir = std::env::temp_dir().join(format!("rate-limits-{}", random_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "[rate_limits]\ntoken_per_client = \"200/s\"\ntoken_burst = 400\nrevoke_per_client = \"10/min\"\n\
         forward_auth_per_peer = 0\nunauthenticated_failures_per_peer = \"off\"\n",
    )
    .unwrap();
    let settings = Settings::load(Some(&file)).unwrap();
    assert_eq!(settings.rate_limits.token_per_client, Rate::new(200, Duration::from_secs(1)));
    assert_eq!(settings.rate_limits.token_burst, Some(400));
    assert_eq!(settings.rate_limits.revoke_per_client, Rate::new(10, Duration::from_secs(60)));
    assert_eq!(settings.rate_limits.forward_auth_per_peer, Rate::OFF);
    assert_eq!(settings.rate_limits.unauthenticated_failures_per_peer, Rate::OFF);

    for (bad, key) in [("token_per_client = \"10/day\"", "token_per_client"), ("token_burst = 0", "token_burst")] {
        std::fs::write(&file, format!("[rate_limits]\n{bad}\n")).unwrap();
        let error = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains(key), "{bad}: {error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn rate_limits_take_a_restart_to_change() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let mut changed = app.settings.clone();
    changed.rate_limits.token_per_client = per_hour(1);

    let reloaded = app.reloader.apply(changed).await.unwrap();

    assert_eq!(reloaded.needs_restart, ["rate_limits"]);
}
