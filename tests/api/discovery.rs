//! RFC 8414 metadata, health endpoints and the API documentation UI.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn metadata_names_the_issuer_endpoints_grant_type_and_auth_methods() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(metadata["token_endpoint"], format!("{ISSUER}/token"));
    assert_eq!(metadata["jwks_uri"], format!("{ISSUER}{JWKS_PATH}"));
    assert_eq!(metadata["grant_types_supported"], serde_json::json!([TOKEN_EXCHANGE]));
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    for (name, value) in metadata.as_object().unwrap() {
        assert!(value.as_array().is_none_or(|a| !a.is_empty()), "RFC 8414 §3.2: {name} is an empty array");
    }
}

#[tokio::test]
async fn the_metadata_issuer_is_the_iss_of_minted_tokens() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let metadata: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();

    let body: Value = app.exchange(&idp.token(app.now()), &[]).await.json().await.unwrap();

    let claims = app.verify_as_downstream(body["access_token"].as_str().unwrap(), "internal").await;
    assert_eq!(claims["iss"], metadata["issuer"], "RFC 8414 §3.3");
}

#[tokio::test]
async fn an_issuer_with_a_path_is_served_below_the_well_known_segment() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.server.issuer = "https://sts.example.com/tx".into()).spawn().await;

    let at_path = app.http.get(app.url("/.well-known/oauth-authorization-server/tx")).send().await.unwrap();
    let at_root = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();

    assert_eq!(at_path.status(), 200, "RFC 8414 §3.1");
    let metadata: Value = at_path.json().await.unwrap();
    assert_eq!(metadata["issuer"], "https://sts.example.com/tx");
    assert_oauth_error(at_root, 404, "invalid_request").await;
}

#[tokio::test]
async fn healthz_and_readyz_report_ok() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let live = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();

    assert_eq!(live.status(), 200);
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["signing_key"], "ok");
}

#[tokio::test]
async fn swagger_ui_is_served() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let ui = app.http.get(app.url("/swagger-ui/")).send().await.unwrap();
    let no_slash = app.http.get(app.url("/swagger-ui")).send().await.unwrap();

    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    assert_eq!(no_slash.status(), 200, "redirected to /swagger-ui/");
}

#[tokio::test]
async fn an_unknown_path_is_not_found_with_an_oauth_error_body() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let response = app.http.get(app.url("/no-such-endpoint")).send().await.unwrap();

    assert_oauth_error(response, 404, "invalid_request").await;
}

#[tokio::test]
async fn metrics_expose_exchanges_cache_lookups_and_upstream_latency() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let token = idp.token(app.now());
    assert_eq!(app.exchange(&token, &[]).await.status(), 200);
    assert_eq!(app.exchange(&token, &[]).await.status(), 200);
    assert_oauth_error(app.exchange(&token, &[("audience", "payroll")]).await, 400, "invalid_target").await;

    let metrics = app.metrics().await;

    let exchanges = "token_exchange_exchanges_total";
    assert_eq!(metrics.value(exchanges, &[("client", "gateway"), ("outcome", "issued")]), Some(2.0), "{metrics}");
    assert_eq!(metrics.value(exchanges, &[("client", "gateway"), ("outcome", "invalid_target")]), Some(1.0));
    assert_eq!(metrics.total(exchanges), 3.0, "only this app's requests are counted");
    let lookups = "token_exchange_cache_lookups_total";
    assert_eq!(metrics.value(lookups, &[("tier", "l1"), ("result", "miss")]), Some(1.0), "the first exchange");
    assert_eq!(metrics.value(lookups, &[("tier", "l1"), ("result", "hit")]), Some(1.0), "the second exchange");
    assert_eq!(metrics.total(lookups), 2.0, "a forbidden audience is refused before any lookup");
    let jwks = [("upstream", "idp"), ("kind", "jwks")];
    let requests = "token_exchange_upstream_requests_total";
    assert_eq!(metrics.value(requests, &[jwks[0], jwks[1], ("status", "2xx")]), Some(1.0), "one JWKS fetch");
    assert_eq!(metrics.total(requests), 1.0);
    assert_eq!(metrics.value("token_exchange_upstream_request_duration_seconds_count", &jwks), Some(1.0));
    assert_eq!(metrics.total("token_exchange_redis_errors_total"), 0.0);
}
