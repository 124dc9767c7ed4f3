//! What a client sees through a gateway, the same for every proxy (RFC 6750 for the
//! challenges, RFC 9068 for the token the backend gets); each proxy's module runs each one.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::json;
use wiremock::ResponseTemplate;

use super::harness::{
    ADMIN_ID, ADMIN_SECRET, API_HOST, BACKEND_BODY, Backend, Proxy, RunningProxy, Stack, Upstreams, bearer_of,
    free_port,
};
use crate::helpers::ISSUER;

/// The `WWW-Authenticate` of a refusal, which must be a Bearer challenge (RFC 6750 §3).
fn challenge(response: &reqwest::Response) -> String {
    let value = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("a {} without WWW-Authenticate: {:?}", response.status(), response.headers()))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(value.starts_with("Bearer "), "a Bearer challenge: {value}");
    value
}

async fn assert_nothing_reached_the_backend(stack: &Stack) {
    let requests = stack.backend.requests().await;
    assert!(requests.is_empty(), "nothing may reach the backend: {requests:?}\nproxy log:\n{}", stack.proxy.log());
}

pub async fn a_valid_token_reaches_the_backend_as_our_internal_token(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let internet_token = stack.token_with(json!({}));

    let response = stack.get("/orders/42?expand=lines", Some(&internet_token)).await;

    assert_eq!(response.status(), 200, "{}", stack.proxy.log());
    assert_eq!(response.text().await.unwrap(), BACKEND_BODY);
    let request = stack.backend.only_request().await;
    assert_eq!(request.url.path(), "/orders/42");
    assert_eq!(request.url.query(), Some("expand=lines"));
    for (name, value) in &request.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(&internet_token), "the internet token reached the backend in {name}");
    }
    let (_, claims) = stack.internal_token_at_backend("orders").await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(claims["scope"], "read", "the route's scope");
    assert_eq!(claims["email"], "user@example.com", "a claim the example copies");

    // The longest prefix wins: /billing is its own route, with its own audience.
    stack.backend.reset().await;
    let response = stack.get("/billing/invoices", Some(&internet_token)).await;
    assert_eq!(response.status(), 200, "{}", stack.proxy.log());
    let (_, claims) = stack.internal_token_at_backend("billing").await;
    assert_eq!(claims["scope"], "write");
}

pub async fn no_token_is_401_with_a_bare_bearer_challenge(proxy: Proxy) {
    let stack = Stack::start(proxy).await;

    let response = stack.get("/orders/42", None).await;

    assert_eq!(response.status(), 401, "{}", stack.proxy.log());
    let challenge = challenge(&response);
    assert_eq!(challenge, format!("Bearer realm=\"{ISSUER}\""), "RFC 6750 §3.1: no error code without credentials");
    assert_nothing_reached_the_backend(&stack).await;
}

pub async fn an_invalid_or_expired_token_is_401_invalid_token(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let valid = stack.token_with(json!({}));
    let (signed, signature) = valid.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    let now = stack.app.now();
    let expired = stack.token_with(json!({"iat": now - 7200, "exp": now - 3600}));

    for (what, token) in [("a tampered signature", tampered), ("an expired token", expired)] {
        let response = stack.get("/orders/42", Some(&token)).await;

        assert_eq!(response.status(), 401, "{what}: {}", stack.proxy.log());
        let challenge = challenge(&response);
        assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
        assert!(challenge.contains(&format!("realm=\"{ISSUER}\"")), "{what}: {challenge}");
    }
    assert_nothing_reached_the_backend(&stack).await;
}

pub async fn a_revoked_token_is_401_invalid_token(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let token = stack.token_with(json!({}));
    assert_eq!(stack.get("/orders/42", Some(&token)).await.status(), 200, "{}", stack.proxy.log());

    let revoked = stack.app.post_form_as("/revoke", ADMIN_ID, ADMIN_SECRET, &[("token", &token)]).await;
    assert_eq!(revoked.status(), 200);
    let response = stack.get("/orders/42", Some(&token)).await;

    assert_eq!(response.status(), 401, "{}", stack.proxy.log());
    assert!(challenge(&response).contains("error=\"invalid_token\""));
    assert_eq!(stack.backend.requests().await.len(), 1, "only the request before the revocation");
}

pub async fn a_scope_the_route_needs_and_the_subject_lacks_is_403_insufficient_scope(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let read_only = stack.token_with(json!({"scope": "read"}));

    let response = stack.get("/billing/invoices", Some(&read_only)).await;

    assert_eq!(response.status(), 403, "{}", stack.proxy.log());
    let challenge = challenge(&response);
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"write\""), "the scope the route needs: {challenge}");
    assert_nothing_reached_the_backend(&stack).await;
    // The same token is good for a route that needs no more than it has.
    assert_eq!(stack.get("/orders/42", Some(&read_only)).await.status(), 200);
}

/// `?route=` on the decision URL and `X-Token-Exchange-Route` are for the gateway to set: a
/// client that names a laxer route for its request must not get that route's decision.
pub async fn the_client_cannot_choose_the_route(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let read_only = stack.token_with(json!({"scope": "read"}));
    let bearer = format!("Bearer {read_only}");

    let by_query = stack.request(Method::GET, "/billing/invoices?route=api").header(AUTHORIZATION, &bearer);
    let by_header = stack
        .request(Method::GET, "/billing/invoices")
        .header(AUTHORIZATION, &bearer)
        .header("X-Token-Exchange-Route", "api");

    for (what, request) in [("?route=api", by_query), ("X-Token-Exchange-Route: api", by_header)] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "the client chose the route with {what}");
    }
    assert_nothing_reached_the_backend(&stack).await;
}

pub async fn an_identity_provider_outage_is_503(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let opaque = "opaque-token-during-an-outage";
    stack.idp.introspection_answers(opaque, ResponseTemplate::new(503).insert_header("Retry-After", "7")).await;

    let response = stack.get("/orders/42", Some(opaque)).await;

    assert_eq!(response.status(), 503, "not 500, not 401: {}", stack.proxy.log());
    if proxy.passes_retry_after() {
        assert_eq!(response.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("7"));
    }
    assert_nothing_reached_the_backend(&stack).await;
}

/// The proxy fails closed: with the service gone, the request is refused, never passed on.
pub async fn an_unreachable_service_fails_closed(proxy: Proxy) {
    let backend = Backend::start().await;
    let nobody = Upstreams { auth: free_port(), grpc: Some(free_port()), backend: backend.port() };
    let running = RunningProxy::start(proxy, nobody).await;

    let request = reqwest::Client::new().get(running.url("/orders/42")).header(HOST, API_HOST);
    let response = request.header(AUTHORIZATION, "Bearer some-internet-token").send().await.unwrap();

    assert_eq!(response.status().as_u16(), proxy.status_when_the_service_is_down(), "{}", running.log());
    assert!(backend.requests().await.is_empty(), "nothing may reach the backend");
}

pub async fn head_and_post_pass_with_the_internal_token(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let bearer = format!("Bearer {}", stack.token_with(json!({})));

    let head = stack.request(Method::HEAD, "/orders/42").header(AUTHORIZATION, &bearer).send().await.unwrap();
    assert_eq!(head.status(), 200, "{}", stack.proxy.log());
    let request = stack.backend.only_request().await;
    assert_eq!(request.method.as_str(), "HEAD");
    stack.app.verify_as_downstream(&bearer_of(&request), "orders").await;

    stack.backend.reset().await;
    let post = stack
        .request(Method::POST, "/orders")
        .header(AUTHORIZATION, &bearer)
        .header("Content-Type", "application/json")
        .body(r#"{"item":"widget","quantity":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200, "{}", stack.proxy.log());
    assert_eq!(post.text().await.unwrap(), BACKEND_BODY);
    let request = stack.backend.only_request().await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.body, br#"{"item":"widget","quantity":3}"#, "the body reaches the backend whole");
    stack.app.verify_as_downstream(&bearer_of(&request), "orders").await;
}

/// Many groups copied from the subject make an internal token far beyond the 4 KiB a proxy
/// reads response headers into by default.
pub async fn an_internal_token_over_4_kib_passes(proxy: Proxy) {
    let stack = Stack::start(proxy).await;
    let groups: Vec<String> = (0..300).map(|i| format!("team-{i:04}-readers")).collect();
    let opaque = "opaque-token-with-many-groups";
    let answer = json!({"active": true, "sub": "opaque-user", "scope": "read write", "exp": stack.app.now() + 3600,
                        "groups": groups});
    stack.idp.introspection_answers(opaque, ResponseTemplate::new(200).set_body_json(answer)).await;

    let response = stack.get("/orders/42", Some(opaque)).await;

    assert_eq!(response.status(), 200, "{}", stack.proxy.log());
    let (token, claims) = stack.internal_token_at_backend("orders").await;
    assert!(token.len() > 8 * 1024, "the internal token is {} bytes", token.len());
    assert_eq!(claims["groups"], json!(groups));
}
