//! Upstream protection (issue #6): per upstream asked about each token, a circuit breaker
//! (consecutive failures open it; while open, 503 with `Retry-After` at once; after the
//! cool-down one probe decides) and a bounded number of calls under way; per client, a budget
//! of upstream calls for tokens never seen before (over it, 429 `slow_down`, RFC 8628 §3.5).
//! Time is the app's clock: the tests move it, and the wiremock provider counts its calls.

use std::time::Duration;

use serde_json::json;
use token_exchange::config::{Rate, RouteSettings, Settings, UpstreamProtection, UpstreamSettings};
use wiremock::ResponseTemplate;

use crate::helpers::*;

const BREAKER_STATE: &str = "token_exchange_upstream_breaker_state";
const CALLS_REFUSED: &str = "token_exchange_upstream_calls_refused_total";
const IN_FLIGHT: &str = "token_exchange_upstream_calls_in_flight";
const BUDGET_REFUSALS: &str = "token_exchange_first_sight_refusals_total";
const OPAQUE: &str = "opaque";
const OTHER_ID: &str = "other-gateway";
const OTHER_SECRET: &str = "other-gateway-secret";

/// The usual introspection upstream, `opaque`, protected as `change` says.
fn guarded(idp: &FakeIdp, change: impl FnOnce(&mut UpstreamProtection)) -> UpstreamSettings {
    let mut upstream = idp.introspection_upstream();
    change(&mut upstream.protection);
    upstream
}

fn breaker(failure_threshold: u32, cool_down_secs: u64) -> impl FnOnce(&mut UpstreamProtection) {
    move |protection| {
        protection.failure_threshold = failure_threshold;
        protection.cool_down = Duration::from_secs(cool_down_secs);
    }
}

fn per_minute(count: u32) -> Rate {
    Rate::new(count, Duration::from_secs(60))
}

fn active_until(exp: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "u", "scope": "read", "exp": exp}))
}

fn inactive() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"active": false}))
}

/// `Retry-After` in seconds, when there is one.
fn upstream_is(reason: &'static str) -> [(&'static str, &'static str); 2] {
    [("upstream", OPAQUE), ("reason", reason)]
}

// ------------------------------------------------------------------------------------------
// The circuit breaker
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn consecutive_upstream_failures_open_the_breaker_which_answers_503_with_retry_after_without_asking() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(guarded(&idp, breaker(3, 30))).spawn().await;
    idp.introspection_answers_all(ResponseTemplate::new(503)).await;

    for n in 0..3 {
        let failed = app.exchange_opaque(&format!("down-{n}"), &[]).await;
        assert_oauth_error(failed, 503, "temporarily_unavailable").await;
    }
    assert_eq!(idp.introspections().await, 3);
    let refused = app.exchange_opaque("down-3", &[]).await;
    assert_eq!(retry_after(&refused), Some(30), "the whole cool-down is left");
    assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    app.clock.advance(Duration::from_secs(10));
    let later = app.exchange_opaque("down-4", &[]).await;
    assert_eq!(retry_after(&later), Some(20), "the rest of the cool-down");
    assert_oauth_error(later, 503, "temporarily_unavailable").await;

    assert_eq!(idp.introspections().await, 3, "an open breaker asks no one");
    let metrics = app.metrics().await;
    assert_eq!(metrics.value(BREAKER_STATE, &[("upstream", OPAQUE)]), Some(2.0), "open: {metrics}");
    assert_eq!(metrics.value(CALLS_REFUSED, &upstream_is("breaker_open")), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn after_the_cool_down_one_probe_goes_to_the_upstream_and_its_answer_closes_the_breaker() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(guarded(&idp, breaker(2, 30))).spawn().await;
    idp.introspection_answers_all(ResponseTemplate::new(500)).await;
    for n in 0..2 {
        assert_eq!(app.exchange_opaque(&format!("down-{n}"), &[]).await.status(), 503);
    }
    assert_eq!(app.exchange_opaque("refused", &[]).await.status(), 503);

    idp.publish().await; // the provider is back (and its request log starts again)
    idp.introspection_answers_all(active_until(app.now() + 3600)).await;
    app.clock.advance(Duration::from_secs(30));

    assert_eq!(app.exchange_opaque("probe", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 1);
    assert_eq!(app.metrics().await.value(BREAKER_STATE, &[("upstream", OPAQUE)]), Some(0.0), "closed");
    assert_eq!(app.exchange_opaque("after-the-probe", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 2, "calls flow again");
}

#[tokio::test]
async fn while_the_probe_is_out_other_calls_are_refused_and_a_failed_probe_opens_the_breaker_again() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(guarded(&idp, breaker(1, 30))).spawn().await;
    idp.introspection_answers_all(ResponseTemplate::new(503)).await;
    assert_eq!(app.exchange_opaque("down", &[]).await.status(), 503);
    idp.publish().await;
    idp.introspection_answers_all(ResponseTemplate::new(503).set_delay(Duration::from_secs(2))).await;
    app.clock.advance(Duration::from_secs(30));

    let (probe, during_the_probe) = tokio::join!(app.exchange_opaque("probe", &[]), async {
        eventually("the probe reaches the upstream", async || idp.introspections().await == 1).await;
        let metrics = app.metrics().await;
        assert_eq!(metrics.value(BREAKER_STATE, &[("upstream", OPAQUE)]), Some(1.0), "half-open: {metrics}");
        app.exchange_opaque("during-the-probe", &[]).await
    });

    assert_eq!(retry_after(&during_the_probe), Some(1));
    assert_oauth_error(during_the_probe, 503, "temporarily_unavailable").await;
    assert_oauth_error(probe, 503, "temporarily_unavailable").await;
    let after = app.exchange_opaque("after-the-probe", &[]).await;
    assert_eq!(retry_after(&after), Some(30), "a failed probe opens it for a whole cool-down");
    assert_eq!(after.status(), 503);
    assert_eq!(idp.introspections().await, 1, "exactly one probe");
}

#[tokio::test]
async fn verdicts_on_tokens_and_refusals_of_our_credentials_never_open_the_breaker() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(guarded(&idp, breaker(2, 30))).spawn().await;
    idp.introspection_answers_all(inactive()).await;
    for n in 0..5 {
        assert_oauth_error(app.exchange_opaque(&format!("inactive-{n}"), &[]).await, 400, "invalid_request").await;
    }
    idp.publish().await;
    idp.introspection_answers_all(ResponseTemplate::new(401)).await;
    for n in 0..3 {
        let refused = app.exchange_opaque(&format!("misconfigured-{n}"), &[]).await;
        assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    }

    assert_eq!(idp.introspections().await, 3, "every one reached the upstream");
    idp.publish().await;
    idp.introspection_answers_all(active_until(app.now() + 600)).await;
    assert_eq!(app.exchange_opaque("fine", &[]).await.status(), 200);
    let metrics = app.metrics().await;
    assert_eq!(metrics.value(BREAKER_STATE, &[("upstream", OPAQUE)]), Some(0.0), "{metrics}");
    assert_eq!(metrics.value(CALLS_REFUSED, &upstream_is("breaker_open")), Some(0.0), "{metrics}");
}

#[tokio::test]
async fn a_reload_applies_new_protection_and_keeps_the_upstreams_verdicts() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(guarded(&idp, breaker(1, 30))).spawn().await;
    idp.introspection_answers_all(ResponseTemplate::new(503)).await;
    assert_eq!(app.exchange_opaque("down", &[]).await.status(), 503);
    assert_eq!(app.exchange_opaque("refused", &[]).await.status(), 503);
    assert_eq!(idp.introspections().await, 1);

    let mut without_breaker = app.settings.clone();
    without_breaker.upstreams[1].protection.failure_threshold = 0;
    let reloaded = app.reloader.apply(without_breaker).await.unwrap();

    assert!(reloaded.changed_upstreams.is_empty(), "{reloaded:?}");
    assert_eq!(app.exchange_opaque("asked-again", &[]).await.status(), 503);
    assert_eq!(idp.introspections().await, 2, "no breaker any more");
}

// ------------------------------------------------------------------------------------------
// The concurrency limit
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn at_most_max_concurrent_calls_reach_a_slow_upstream_and_the_rest_are_refused_after_the_queue_timeout() {
    let idp = FakeIdp::start().await;
    let upstream = guarded(&idp, |protection| {
        protection.max_concurrent_calls = 2;
        protection.queue_timeout = Duration::from_secs(1);
    });
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    idp.introspection_answers_all(active_until(app.now() + 3600).set_delay(Duration::from_secs(3))).await;
    let tokens: Vec<String> = (0..5).map(|n| format!("slow-{n}")).collect();

    let requests = futures_util::future::join_all(tokens.iter().map(|token| app.exchange_opaque(token, &[])));
    let (responses, ()) = tokio::join!(requests, async {
        eventually("two calls reach the upstream", async || idp.introspections().await == 2).await;
        let metrics = app.metrics().await;
        assert_eq!(metrics.value(IN_FLIGHT, &[("upstream", OPAQUE)]), Some(2.0), "{metrics}");
        // The others wait for a slot on the app's clock: move it until their wait is over.
        eventually("the queued calls are refused", async || {
            app.clock.advance(Duration::from_secs(1));
            app.metrics().await.value(CALLS_REFUSED, &upstream_is("concurrency_limit")) == Some(3.0)
        })
        .await;
    });

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    for refused in responses.into_iter().filter(|r| r.status() == 503) {
        assert_eq!(retry_after(&refused), Some(1));
        assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    }
    assert_eq!(idp.introspections().await, 2, "never more than two");
    assert_eq!(app.metrics().await.value(IN_FLIGHT, &[("upstream", OPAQUE)]), Some(0.0));
}

// ------------------------------------------------------------------------------------------
// The first-sight budget
// ------------------------------------------------------------------------------------------

async fn exchange_opaque_as(app: &TestApp, client_id: &str, secret: &str, token: &str) -> reqwest::Response {
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token), ("subject_token_type", ACCESS_TOKEN)];
    app.post_form_as("/token", client_id, secret, &form).await
}

#[tokio::test]
async fn a_client_flooding_unknown_tokens_gets_429_slow_down_and_neither_other_clients_nor_its_known_tokens_do() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| {
            s.clients.push(client(OTHER_ID, OTHER_SECRET));
            s.rate_limits.first_sight_per_client = per_minute(3);
        })
        .spawn()
        .await;
    idp.introspection_active("known", app.now() + 3600).await;
    idp.introspection_answers_all(inactive()).await;
    assert_eq!(app.exchange_opaque("known", &[]).await.status(), 200);
    for n in 1..=2 {
        assert_oauth_error(app.exchange_opaque(&format!("garbage-{n}"), &[]).await, 400, "invalid_request").await;
    }

    let refused = app.exchange_opaque("garbage-3", &[]).await;
    let wait = retry_after(&refused).expect("a Retry-After");
    assert_oauth_error(refused, 429, "slow_down").await;
    assert!((1..=20).contains(&wait), "one call back every 20 s, not {wait}");
    assert_eq!(idp.introspections().await, 3, "the refused token was not shown to the upstream");
    assert_eq!(app.exchange_opaque("known", &[]).await.status(), 200, "a cached identity costs nothing");
    assert_oauth_error(app.exchange_opaque("garbage-1", &[]).await, 400, "invalid_request").await;
    let other = exchange_opaque_as(&app, OTHER_ID, OTHER_SECRET, "garbage-of-another").await;
    assert_oauth_error(other, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 4);
    let metrics = app.metrics().await;
    assert_eq!(metrics.value(BUDGET_REFUSALS, &[("client", CLIENT_ID)]), Some(1.0), "{metrics}");
    assert_eq!(metrics.value(BUDGET_REFUSALS, &[("client", OTHER_ID)]), Some(0.0), "{metrics}");
    let slowed = [("outcome", "slow_down"), ("client", CLIENT_ID)];
    assert_eq!(metrics.value("token_exchange_exchanges_total", &slowed), Some(1.0), "{metrics}");

    app.clock.advance(Duration::from_secs(wait));
    assert_oauth_error(app.exchange_opaque("garbage-3", &[]).await, 400, "invalid_request").await;
    assert_eq!(idp.introspections().await, 5, "the budget refills on the app's clock");
}

#[tokio::test]
async fn a_forward_auth_route_spends_its_clients_budget_and_is_answered_429_with_retry_after() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| {
            s.rate_limits.first_sight_per_client = per_minute(1);
            s.forward_auth.routes.push(RouteSettings { scope: None, ..orders_route() });
        })
        .spawn()
        .await;
    idp.introspection_answers_all(inactive()).await;
    let decide = |token: &'static str| {
        app.http
            .get(app.url("/forward-auth"))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Host", "api.example.com")
            .header("X-Forwarded-Uri", "/api/orders/7")
            .bearer_auth(token)
            .send()
    };

    assert_eq!(decide("garbage-1").await.unwrap().status(), 401);
    let refused = decide("garbage-2").await.unwrap();

    assert_eq!(refused.status(), 429);
    assert_eq!(retry_after(&refused), Some(60));
    assert!(refused.text().await.unwrap().is_empty(), "forward-auth answers carry no body");
    assert_eq!(idp.introspections().await, 1);
    let metrics = app.metrics().await;
    assert_eq!(metrics.value(BUDGET_REFUSALS, &[("client", CLIENT_ID)]), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn jwts_are_verified_offline_and_spend_no_budget() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.rate_limits.first_sight_per_client = per_minute(1)).spawn().await;

    for n in 0..3 {
        let subject = idp.token_with(app.now(), json!({"jti": format!("jwt-{n}")}));
        assert_eq!(app.exchange(&subject, &[]).await.status(), 200);
    }

    let metrics = app.metrics().await;
    assert_eq!(metrics.value(BUDGET_REFUSALS, &[("client", CLIENT_ID)]), Some(0.0), "{metrics}");
    assert_eq!(metrics.value(BREAKER_STATE, &[("upstream", "idp")]), None, "no breaker for offline checks");
}

// ------------------------------------------------------------------------------------------
// Metrics and configuration
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_protection_series_is_in_metrics_from_the_start() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(idp.introspection_upstream()).spawn().await;

    let metrics = app.metrics().await;

    let upstream = [("upstream", OPAQUE)];
    assert_eq!(metrics.value(BREAKER_STATE, &upstream), Some(0.0), "{metrics}");
    assert_eq!(metrics.value(IN_FLIGHT, &upstream), Some(0.0), "{metrics}");
    for reason in ["breaker_open", "concurrency_limit"] {
        assert_eq!(metrics.value(CALLS_REFUSED, &upstream_is(reason)), Some(0.0), "{reason}: {metrics}");
    }
    assert_eq!(metrics.value(BUDGET_REFUSALS, &[("client", CLIENT_ID)]), Some(0.0), "{metrics}");
}

#[test]
fn protection_is_read_from_an_upstreams_sub_table_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let upstream = "[[upstreams]]\nname = \"corp\"\nissuer = \"https://corp.example.com\"\n\
                    introspection_endpoint = \"https://corp.example.com/introspect\"\n\
                    client_id = \"token-exchange\"\nclient_secret = \"s\"\n[upstreams.protection]\n";
    let write = |protection: &str| {
        let budget = "[rate_limits]\nfirst_sight_per_client = \"100/min\"\n";
        std::fs::write(&file, format!("{upstream}{protection}\n{budget}")).unwrap();
    };

    write("max_concurrent_calls = 8\nqueue_timeout = \"250ms\"\nfailure_threshold = 0\ncool_down = \"0s\"");
    let settings = Settings::load(Some(&file)).unwrap();

    let protection = &settings.upstreams[0].protection;
    assert_eq!((protection.max_concurrent_calls, protection.queue_timeout), (8, Duration::from_millis(250)));
    assert_eq!(protection.failure_threshold, 0, "0 switches the breaker off, and its cool-down need not be set");
    assert_eq!(settings.rate_limits.first_sight_per_client, per_minute(100));
    for (bad, key) in [
        ("failure_threshold = 5\ncool_down = \"500ms\"", "upstreams[0].protection.cool_down"),
        ("queue_timeout = \"1m\"", "upstreams[0].protection.queue_timeout"),
    ] {
        write(bad);
        let error = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(error.contains(key), "{bad}: {error}");
    }
}

#[test]
fn protection_is_on_by_default() {
    let protection = UpstreamProtection::default();

    assert_eq!(protection.max_concurrent_calls, 64);
    assert_eq!(protection.queue_timeout, Duration::from_millis(500));
    assert_eq!((protection.failure_threshold, protection.cool_down), (5, Duration::from_secs(30)));
    assert_eq!(Settings::default().rate_limits.first_sight_per_client, per_minute(6000));
}
