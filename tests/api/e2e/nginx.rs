//! nginx with `auth_request` (examples/nginx/nginx.conf), and its second server, which keeps
//! allowed decisions in `proxy_cache` for as long as the service's `Cache-Control` allows.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::json;

use super::harness::{ADMIN_ID, ADMIN_SECRET, Proxy, Stack, bearer_of};

gateway_behaviours!(Proxy::Nginx);

/// nginx's own account of where a decision came from (`X-Token-Exchange-Cache`).
const CACHE_STATUS: &str = "x-token-exchange-cache";

async fn through_cache(stack: &Stack, token: &str) -> reqwest::Response {
    let request = stack.cached_request(Method::GET, "/orders/42").header(AUTHORIZATION, format!("Bearer {token}"));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", stack.proxy.log());
    response
}

fn cache_status(response: &reqwest::Response) -> &str {
    response.headers().get(CACHE_STATUS).map_or("", |value| value.to_str().unwrap())
}

async fn caching_stack() -> Stack {
    Stack::start_with(Proxy::Nginx, |settings| settings.forward_auth.proxy_cache_ttl = Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_cached_decision_answers_the_same_token_again_and_no_other() {
    let stack = caching_stack().await;
    let first = stack.token_with(json!({}));
    let second = stack.token_with(json!({"sub": "user-456"}));

    let miss = through_cache(&stack, &first).await;
    let hit = through_cache(&stack, &first).await;
    let other = through_cache(&stack, &second).await;

    assert_eq!((cache_status(&miss), cache_status(&hit), cache_status(&other)), ("MISS", "HIT", "MISS"));
    assert_eq!(stack.decisions("api", "allowed").await, 2.0, "the service decided once per token");
    let requests = stack.backend.requests().await;
    assert_eq!(requests.len(), 3);
    let mut subjects = Vec::new();
    for request in &requests {
        let claims = stack.app.verify_as_downstream(&bearer_of(request), "orders").await;
        subjects.push(claims["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(subjects, ["user-123", "user-123", "user-456"], "each token passes as its own internal token");
}

#[tokio::test]
async fn a_revocation_reaches_the_proxy_cache_only_after_max_age() {
    let stack = caching_stack().await;
    let token = stack.token_with(json!({}));
    through_cache(&stack, &token).await;

    let revoked = stack.app.post_form_as("/revoke", ADMIN_ID, ADMIN_SECRET, &[("token", &token)]).await;
    assert_eq!(revoked.status(), 200);

    // The server that asks every time refuses the token at once; the cache still has its
    // decision, for up to proxy_cache_ttl (documented in examples/README.md).
    assert_eq!(stack.get("/orders/42", Some(&token)).await.status(), 401);
    let cached = through_cache(&stack, &token).await;
    assert_eq!(cache_status(&cached), "HIT");
}

#[tokio::test]
async fn without_proxy_cache_ttl_no_decision_is_cached() {
    let stack = Stack::start(Proxy::Nginx).await;
    let token = stack.token_with(json!({}));

    let first = through_cache(&stack, &token).await;
    let second = through_cache(&stack, &token).await;

    assert_eq!((cache_status(&first), cache_status(&second)), ("MISS", "MISS"));
    assert_eq!(stack.decisions("api", "allowed").await, 2.0, "Cache-Control: no-store is obeyed");
}

#[tokio::test]
async fn refusals_are_never_cached() {
    let stack = caching_stack().await;
    let read_only = stack.token_with(json!({"scope": "read"}));
    let bearer = format!("Bearer {read_only}");

    for _ in 0..2 {
        let request = stack.cached_request(Method::GET, "/billing/invoices").header(AUTHORIZATION, &bearer);
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
    }
    assert_eq!(stack.decisions("billing", "forbidden").await, 2.0);
}
