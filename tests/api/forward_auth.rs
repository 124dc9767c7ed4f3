//! The decision endpoint for gateways (RFC 6750 answers at `/forward-auth`) and Envoy ext_authz
//! over gRPC: the same exchange as `/token`, decided under a configured route.

use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse as CheckHttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, attribute_context};
use serde_json::json;
use token_exchange::config::Settings;
use wiremock::ResponseTemplate;

use crate::helpers::*;

const ROUTE_AUDIENCE: &str = "orders";

async fn gateway_app(idp: &FakeIdp) -> TestApp {
    TestApp::builder(idp).configure(with_orders_route).spawn().await
}

/// A decision request as nginx sends it: the client's token and its request in X-Forwarded-*.
async fn decide(app: &TestApp, token: Option<&str>, uri: &str) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url("/forward-auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Host", "api.example.com")
        .header("X-Forwarded-Uri", uri);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn internal_token(response: &reqwest::Response) -> String {
    let header = response.headers()["authorization"].to_str().unwrap();
    header.strip_prefix("Bearer ").expect("a Bearer credential").to_owned()
}

#[tokio::test]
async fn a_valid_bearer_token_gets_200_with_an_internal_token_for_the_routes_audience() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;

    let response = decide(&app, Some(&idp.token(app.now())), "/api/orders/42?expand=1").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = internal_token(&response);
    assert!(response.bytes().await.unwrap().is_empty(), "an empty body");
    let claims = app.verify_as_downstream(&token, ROUTE_AUDIENCE).await;
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["client_id"], CLIENT_ID);
}

#[tokio::test]
async fn without_a_bearer_token_the_answer_is_401_with_a_bare_challenge() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;

    let response = decide(&app, None, "/api/orders").await;

    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), format!("Bearer realm=\"{ISSUER}\""), "RFC 6750 §3.1: no error code");
}

#[tokio::test]
async fn a_malformed_authorization_header_is_401_invalid_request_never_400() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;

    for header in ["Basic Z2F0ZTp3YXk=", "Bearer", "Bearer two words", "Bearer a\"b"] {
        let response = app
            .http
            .get(app.url("/forward-auth/api/orders"))
            .header("Host", "api.example.com")
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header}");
        assert!(challenge(&response).contains("error=\"invalid_request\""), "{header}: {}", challenge(&response));
    }
}

#[tokio::test]
async fn an_invalid_token_is_401_invalid_token() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let expired = idp.token_with(app.now() - 7200, json!({"exp": app.now() - 3600}));

    let response = decide(&app, Some(&expired), "/api/orders").await;

    assert_eq!(response.status(), 401);
    let challenge = challenge(&response);
    assert!(challenge.starts_with(&format!("Bearer realm=\"{ISSUER}\", error=\"invalid_token\"")), "{challenge}");
    assert!(challenge.contains("error_description=\""), "{challenge}");
}

#[tokio::test]
async fn a_revoked_token_is_401_invalid_token() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());
    assert_eq!(decide(&app, Some(&token), "/api/orders").await.status(), 200);

    let revoked = app.post_form_as("/revoke", CLIENT_ID, CLIENT_SECRET, &[("token", &token)]).await;
    assert_eq!(revoked.status(), 200);

    let response = decide(&app, Some(&token), "/api/orders").await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).contains("invalid_token"));
}

#[tokio::test]
async fn a_scope_the_route_needs_and_the_client_may_not_grant_is_403_insufficient_scope() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            let mut route = orders_route();
            route.scope = Some("admin".into());
            s.forward_auth.routes.push(route);
        })
        .spawn()
        .await;

    let response = decide(&app, Some(&idp.token(app.now())), "/api/orders").await;

    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        format!("Bearer realm=\"{ISSUER}\", error=\"insufficient_scope\", scope=\"admin\"")
    );
}

#[tokio::test]
async fn a_request_no_route_matches_is_403() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());

    assert_eq!(decide(&app, Some(&token), "/api/invoices").await.status(), 403);
    let other_host = app
        .http
        .get(app.url("/forward-auth"))
        .header("X-Forwarded-Host", "elsewhere.example.com")
        .header("X-Forwarded-Uri", "/api/orders")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other_host.status(), 403);
    let unknown_name = app.http.get(app.url("/forward-auth?route=nope")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(unknown_name.status(), 403);
}

#[tokio::test]
async fn a_path_that_could_be_read_two_ways_is_403() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            let mut public = orders_route();
            public.name = "public".into();
            public.path_prefix = "/".into();
            s.forward_auth.routes.push(public);
        })
        .spawn()
        .await;
    let token = idp.token(app.now());

    for uri in ["/api/orders/../admin", "/api//orders", "/api%2Forders", "/api/%2e%2e/admin"] {
        assert_eq!(decide(&app, Some(&token), uri).await.status(), 403, "{uri}");
    }
}

#[tokio::test]
async fn a_route_may_be_named_by_query_or_header_instead_of_matched() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());

    let by_query = app.http.get(app.url("/forward-auth?route=orders")).bearer_auth(&token).send().await.unwrap();
    let by_header = app
        .http
        .post(app.url("/forward-auth"))
        .header("X-Token-Exchange-Route", "orders")
        .bearer_auth(&token)
        .body("ignored")
        .send()
        .await
        .unwrap();

    assert_eq!(by_query.status(), 200);
    assert_eq!(by_header.status(), 200);
}

#[tokio::test]
async fn without_forwarding_headers_the_path_below_forward_auth_and_the_host_are_the_request() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());

    let envoy_style = app
        .http
        .delete(app.url("/forward-auth/api/orders/7"))
        .header("Host", "api.example.com:8443")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let ingress_nginx = app
        .http
        .get(app.url("/forward-auth"))
        .header("Host", "api.example.com")
        .header("X-Original-Method", "PUT")
        .header("X-Original-URI", "/api/orders/7")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(envoy_style.status(), 200);
    assert_eq!(ingress_nginx.status(), 200);
}

#[tokio::test]
async fn head_decisions_are_answered_with_headers_only() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;

    let response = app
        .http
        .head(app.url("/forward-auth/api/orders"))
        .header("Host", "api.example.com")
        .bearer_auth(idp.token(app.now()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("authorization"));
}

#[tokio::test]
async fn an_untrusted_peer_is_403_before_any_work() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            with_orders_route(s);
            s.forward_auth.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        })
        .spawn()
        .await;

    let response = decide(&app, Some(&idp.token(app.now())), "/api/orders").await;

    assert_eq!(response.status(), 403);
    assert_eq!(idp.jwks_fetches().await, 0, "the token was not even looked at");
}

#[tokio::test]
async fn an_upstream_outage_is_503_with_retry_after() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(with_orders_route)
        .spawn()
        .await;
    idp.introspection_answers("opaque-down", ResponseTemplate::new(503).insert_header("Retry-After", "7")).await;

    let response = decide(&app, Some("opaque-down"), "/api/orders").await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
}

#[tokio::test]
async fn with_a_proxy_cache_ttl_a_decision_may_be_cached_no_longer_than_its_token_lives() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| {
            with_orders_route(s);
            s.forward_auth.proxy_cache_ttl = Duration::from_secs(3600);
        })
        .spawn()
        .await;
    let token = idp.token_with(app.now(), json!({"exp": app.now() + 120}));

    let response = decide(&app, Some(&token), "/api/orders").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "max-age=115", "the token's 120 s less 5 s");
    assert_eq!(response.headers()["vary"], "Authorization");
}

#[tokio::test]
async fn a_repeated_decision_hands_out_the_same_internal_token_and_signs_nothing() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());

    let first = internal_token(&decide(&app, Some(&token), "/api/orders/1").await);
    let second = internal_token(&decide(&app, Some(&token), "/api/orders/2").await);

    assert_eq!(first, second);
}

#[tokio::test]
async fn decisions_are_counted_by_route_and_outcome() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;
    let token = idp.token(app.now());
    decide(&app, Some(&token), "/api/orders").await;
    decide(&app, Some(&token), "/api/orders").await;
    decide(&app, None, "/api/orders").await;
    decide(&app, Some(&token), "/nowhere").await;

    let metrics = app.metrics().await;

    let decisions = "token_exchange_forward_auth_decisions_total";
    assert_eq!(metrics.value(decisions, &[("route", "orders"), ("outcome", "allowed")]), Some(2.0));
    assert_eq!(metrics.value(decisions, &[("route", "orders"), ("outcome", "no_credential")]), Some(1.0));
    assert_eq!(metrics.value(decisions, &[("route", "none"), ("outcome", "forbidden")]), Some(1.0));
    let latency = "token_exchange_forward_auth_decision_duration_seconds_count";
    assert_eq!(metrics.value(latency, &[("route", "orders")]), Some(3.0));
}

/// A port that was free a moment ago, for a listener the app binds itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn grpc_app(idp: &FakeIdp) -> (TestApp, AuthorizationClient<tonic::transport::Channel>) {
    let port = free_port();
    let app = TestApp::builder(idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| {
            with_orders_route(s);
            s.forward_auth.grpc_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
        })
        .spawn()
        .await;
    let client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    (app, client)
}

fn check_request(token: Option<&str>, path: &str, route: Option<&str>) -> CheckRequest {
    let mut headers = std::collections::HashMap::new();
    if let Some(token) = token {
        headers.insert("authorization".to_owned(), format!("Bearer {token}"));
    }
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        host: "api.example.com".into(),
        path: path.into(),
        headers,
        ..Default::default()
    };
    let request = attribute_context::Request { http: Some(http), ..Default::default() };
    let context_extensions = route.map(|r| [("route".to_owned(), r.to_owned())].into()).unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext { request: Some(request), context_extensions, ..Default::default() }),
    }
}

fn header_value(headers: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption], name: &str) -> Option<String> {
    headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == name).map(|h| h.value.clone())
}

#[tokio::test]
async fn ext_authz_allows_with_the_internal_token_overwriting_authorization() {
    let idp = FakeIdp::start().await;
    let (app, mut client) = grpc_app(&idp).await;

    let response = client.check(check_request(Some(&idp.token(app.now())), "/api/orders/1", None)).await.unwrap();

    let response = response.into_inner();
    assert_eq!(response.status.unwrap().code, 0, "OK");
    let Some(CheckHttpResponse::OkResponse(ok)) = response.http_response else { panic!("an ok_response") };
    let option = ok.headers.iter().find(|h| h.header.as_ref().is_some_and(|h| h.key == "authorization")).unwrap();
    assert_eq!(option.append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    let bearer = header_value(&ok.headers, "authorization").unwrap();
    app.verify_as_downstream(bearer.strip_prefix("Bearer ").unwrap(), ROUTE_AUDIENCE).await;
}

#[tokio::test]
async fn ext_authz_denies_an_invalid_token_with_401_and_the_challenge() {
    let idp = FakeIdp::start().await;
    let (_app, mut client) = grpc_app(&idp).await;
    idp.introspection_answers("not-active", ResponseTemplate::new(200).set_body_json(json!({"active": false}))).await;

    let response = client.check(check_request(Some("not-active"), "/", Some("orders"))).await.unwrap().into_inner();

    assert_eq!(response.status.unwrap().code, 16, "UNAUTHENTICATED");
    let Some(CheckHttpResponse::DeniedResponse(denied)) = response.http_response else { panic!("a denied_response") };
    assert_eq!(denied.status.unwrap().code, 401);
    assert!(header_value(&denied.headers, "www-authenticate").unwrap().contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn ext_authz_reports_an_upstream_outage_as_unavailable_with_a_503_error_response() {
    let idp = FakeIdp::start().await;
    let (_app, mut client) = grpc_app(&idp).await;
    idp.introspection_answers("opaque-down", ResponseTemplate::new(503)).await;

    let response = client.check(check_request(Some("opaque-down"), "/api/orders", None)).await.unwrap().into_inner();

    assert_eq!(response.status.unwrap().code, 14, "UNAVAILABLE");
    let Some(CheckHttpResponse::ErrorResponse(error)) = response.http_response else { panic!("an error_response") };
    assert_eq!(error.status.unwrap().code, 503);
}

#[test]
fn a_plain_http_issuer_is_accepted_on_loopback_only() {
    let with_issuer = |issuer: &str| {
        let mut settings = Settings::default();
        settings.server.issuer = issuer.into();
        settings.validate().map_err(|e| e.to_string())
    };

    assert!(with_issuer("http://127.0.0.1:8080").is_ok());
    assert!(with_issuer("http://localhost:8080").is_ok());
    let refused = with_issuer("http://sts.example.com").unwrap_err();
    assert!(refused.contains("server.issuer"), "{refused}");
}

#[tokio::test]
async fn below_forward_auth_the_query_is_the_clients_and_never_names_the_route() {
    let idp = FakeIdp::start().await;
    let app = gateway_app(&idp).await;

    let response = app
        .http
        .get(app.url("/forward-auth/api/invoices?route=orders"))
        .header("Host", "api.example.com")
        .bearer_auth(idp.token(app.now()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403, "no route covers /api/invoices");
}
