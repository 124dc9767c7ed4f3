//! Security review, client authentication (RFC 6749 §2.3.1): the brute-force lockout cannot be
//! turned against the real client, unknown client ids look like wrong secrets, and a request
//! names its client once.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::helpers::*;

/// A 429 `slow_down` with a `Retry-After` of at most the one-minute lockout window.
async fn assert_slow_down(response: reqwest::Response) {
    let retry_after: u64 = response
        .headers()
        .get(RETRY_AFTER)
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_oauth_error(response, 429, "slow_down").await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

// ---- Finding 3 (medium): the lockout counts per client id and peer ----

#[tokio::test]
async fn wrong_secrets_from_another_peer_do_not_lock_out_a_client_that_never_authenticated() {
    let idp = FakeIdp::start().await;
    // A fresh replica: the real client has not authenticated here yet.
    let app = spawn_app(&idp).await;
    let limit = app.settings.server.max_failed_client_auth_per_minute;
    let attacker = from_peer(2);

    for guess in 0..limit {
        let response = exchange_as(&attacker, &app, &idp, CLIENT_ID, &format!("guess-{guess}")).await;
        assert_oauth_error(response, 401, "invalid_client").await;
    }
    assert_slow_down(exchange_as(&attacker, &app, &idp, CLIENT_ID, "guess-one-too-many").await).await;

    let response = exchange_as(&app.http, &app, &idp, CLIENT_ID, CLIENT_SECRET).await;

    assert_eq!(response.status(), 200, "the real client, from its own address, is not locked out");
}

#[tokio::test]
async fn past_the_limit_new_wrong_secrets_from_one_peer_are_slow_down_but_a_verified_secret_works() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 3).spawn().await;
    assert_eq!(exchange_as(&app.http, &app, &idp, CLIENT_ID, CLIENT_SECRET).await.status(), 200);
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_oauth_error(exchange_as(&app.http, &app, &idp, CLIENT_ID, guess).await, 401, "invalid_client").await;
    }

    assert_slow_down(exchange_as(&app.http, &app, &idp, CLIENT_ID, "guess-4").await).await;
    assert_slow_down(exchange_as(&app.http, &app, &idp, CLIENT_ID, "guess-5").await).await;

    let response = exchange_as(&app.http, &app, &idp, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(response.status(), 200, "the secret verified earlier is not locked out");
}

/// The memo of verified secrets has no time limit any more; an hour of real time is too long
/// for a test, so this shows what can be seen: the memo holds for every peer, whatever the
/// lockout of that peer.
#[tokio::test]
async fn a_verified_secret_keeps_working_from_every_peer_whatever_its_lockout() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 2).spawn().await;
    let other = from_peer(3);
    assert_eq!(exchange_as(&app.http, &app, &idp, CLIENT_ID, CLIENT_SECRET).await.status(), 200);
    for (peer, name) in [(&app.http, "local"), (&other, "other")] {
        for guess in 1..=2 {
            let response = exchange_as(peer, &app, &idp, CLIENT_ID, &format!("{name}-guess-{guess}")).await;
            assert_oauth_error(response, 401, "invalid_client").await;
        }
        assert_slow_down(exchange_as(peer, &app, &idp, CLIENT_ID, &format!("{name}-guess-3")).await).await;
    }

    for peer in [&app.http, &other] {
        assert_eq!(exchange_as(peer, &app, &idp, CLIENT_ID, CLIENT_SECRET).await.status(), 200);
    }
}

// ---- Finding 4 (low): an unknown client id looks like a wrong secret ----

#[tokio::test]
async fn an_unknown_client_id_gets_the_same_answer_as_a_wrong_secret() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let unknown = exchange_as(&app.http, &app, &idp, "nobody", CLIENT_SECRET).await;
    let wrong = exchange_as(&app.http, &app, &idp, CLIENT_ID, "wrong-secret").await;

    assert_eq!(unknown.headers().get("www-authenticate"), wrong.headers().get("www-authenticate"));
    let unknown: Value = assert_oauth_error(unknown, 401, "invalid_client").await;
    let wrong: Value = assert_oauth_error(wrong, 401, "invalid_client").await;
    assert_eq!(unknown, wrong, "the same body, description included");
}

#[tokio::test]
#[expect(clippy::disallowed_methods, reason = "measures real response times; the app's clock plays no part")]
async fn an_unknown_client_id_costs_about_as_much_as_a_wrong_secret() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 1000).spawn().await;
    let timed = async |client_id: &str, secret: &str| {
        let started = std::time::Instant::now();
        let response = exchange_as(&app.http, &app, &idp, client_id, secret).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 401);
        took
    };
    // Warm up the connection and both paths.
    timed("nobody", "warm-up").await;
    timed(CLIENT_ID, "warm-up").await;

    // Interleaved, so a noisy moment hits both; a new secret each time, so no memo answers.
    // The machine is shared: a measurement spoiled by a neighbour is taken again (twice at
    // most). Before the fix the gap was some fifty-fold, in every measurement.
    let mut measured = Vec::new();
    for attempt in 0..3 {
        let (mut unknown, mut known) = (Vec::new(), Vec::new());
        for round in 0..5 {
            unknown.push(timed("nobody", &format!("unknown-{attempt}-{round}")).await);
            known.push(timed(CLIENT_ID, &format!("known-{attempt}-{round}")).await);
        }
        let (unknown, known) = (median(unknown), median(known));
        if unknown * 3 >= known {
            return;
        }
        measured.push((unknown, known));
    }
    panic!("an unknown id answers much faster than a wrong secret, (unknown, wrong secret) medians: {measured:?}");
}

#[tokio::test]
async fn unknown_client_ids_run_into_the_same_lockout_as_wrong_secrets() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.max_failed_client_auth_per_minute = 3).spawn().await;

    for client_id in ["nobody", CLIENT_ID] {
        for guess in 1..=3 {
            let response = exchange_as(&app.http, &app, &idp, client_id, &format!("guess-{guess}")).await;
            assert_oauth_error(response, 401, "invalid_client").await;
        }
        assert_slow_down(exchange_as(&app.http, &app, &idp, client_id, "guess-4").await).await;
    }
}

// ---- Finding 5 (info): one Authorization header per request ----

#[tokio::test]
async fn a_repeated_authorization_header_is_invalid_request() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.clients.push(client("other", "other-secret"))).spawn().await;
    let subject = idp.token(app.now());
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", subject.as_str()), ("subject_token_type", JWT)];
    let mut headers = HeaderMap::new();
    headers.append(AUTHORIZATION, HeaderValue::from_str(&basic(CLIENT_ID, CLIENT_SECRET)).unwrap());
    headers.append(AUTHORIZATION, HeaderValue::from_str(&basic("other", "other-secret")).unwrap());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));

    let response =
        app.http.post(app.url("/token")).headers(headers).body(serde_html_form::to_string(form).unwrap()).send().await;

    assert_oauth_error(response.unwrap(), 400, "invalid_request").await;
}
