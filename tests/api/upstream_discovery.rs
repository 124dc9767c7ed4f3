//! Endpoints an upstream writes as `"discover"` come from its provider's metadata: OpenID
//! Connect Discovery, else RFC 8414 (the well-known segment inserted before the issuer's path,
//! §3). The metadata must name the configured issuer exactly (§3.3); it is kept for
//! `metadata_max_age`; a provider that cannot say is an outage (503 with Retry-After).
//! `check-config --online` asks every provider before the service starts.

use std::time::Duration;

use serde_json::{Value, json};
use token_exchange::config::{AnswerFormat, Endpoint, UpstreamSettings};
use wiremock::ResponseTemplate;

use crate::helpers::*;

/// The upstream `tenant` (issuer `{idp}/tenant`) that introspects at the endpoint its
/// metadata names.
fn discovering_introspection(idp: &FakeIdp) -> UpstreamSettings {
    let mut upstream = idp.opaque_settings("tenant", false, false);
    upstream.introspection_endpoint = Some(Endpoint::Discover);
    upstream
}

const OPENID_CONFIGURATION: &str = "/tenant/.well-known/openid-configuration";
const RFC8414_METADATA: &str = "/.well-known/oauth-authorization-server/tenant";

fn tenant_issuer(idp: &FakeIdp) -> String {
    format!("{}/tenant", idp.issuer())
}

#[tokio::test]
async fn a_discovered_introspection_endpoint_is_used() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(discovering_introspection(&idp)).spawn().await;
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&tenant_issuer(&idp))).await;
    idp.introspection_active("found-it", app.now() + 600).await;

    let response = app.exchange_opaque("found-it", &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn rfc_8414_metadata_is_read_below_the_well_known_segment_when_there_is_no_openid_configuration() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(discovering_introspection(&idp)).spawn().await;
    idp.publish_metadata(RFC8414_METADATA, idp.metadata_document(&tenant_issuer(&idp))).await;
    idp.introspection_active("oauth-only", app.now() + 600).await;

    let response = app.exchange_opaque("oauth-only", &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!((idp.requests_to(OPENID_CONFIGURATION).await, idp.requests_to(RFC8414_METADATA).await), (1, 1));
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_503_and_no_endpoint_of_it_is_called() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(discovering_introspection(&idp)).spawn().await;
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&idp.issuer())).await;
    idp.introspection_active("impostor-metadata", app.now() + 600).await;

    let response = app.exchange_opaque("impostor-metadata", &[]).await;

    assert_oauth_error(response, 503, "temporarily_unavailable").await;
    assert_eq!(idp.introspections().await, 0);
}

#[tokio::test]
async fn a_discovery_failure_is_503_with_retry_after_and_recovers_once_it_has_passed() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_opaque_upstream(discovering_introspection(&idp)).spawn().await;
    idp.metadata_answers(OPENID_CONFIGURATION, ResponseTemplate::new(503)).await;

    let first = app.exchange_opaque("during-outage", &[]).await;
    app.clock.advance(Duration::from_secs(10));
    let second = app.exchange_opaque("during-outage", &[]).await;

    assert_eq!(first.headers()["retry-after"], "30", "jwks_refetch_cooldown");
    assert_oauth_error(first, 503, "temporarily_unavailable").await;
    assert_eq!(second.headers()["retry-after"], "20");
    assert_oauth_error(second, 503, "temporarily_unavailable").await;
    assert_eq!(idp.requests_to(OPENID_CONFIGURATION).await, 1, "not asked again before Retry-After");

    idp.publish().await;
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&tenant_issuer(&idp))).await;
    idp.introspection_active("during-outage", app.now() + 600).await;
    app.clock.advance(Duration::from_secs(20));

    assert_eq!(app.exchange_opaque("during-outage", &[]).await.status(), 200);
}

#[tokio::test]
async fn discovered_metadata_is_kept_for_metadata_max_age_then_fetched_again() {
    let idp = FakeIdp::start().await;
    let mut upstream = discovering_introspection(&idp);
    upstream.metadata_max_age = Duration::from_secs(600);
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&tenant_issuer(&idp))).await;
    for token in ["first", "second", "third"] {
        idp.introspection_active(token, app.now() + 7200).await;
    }

    assert_eq!(app.exchange_opaque("first", &[]).await.status(), 200);
    app.clock.advance(Duration::from_secs(599));
    assert_eq!(app.exchange_opaque("second", &[]).await.status(), 200);
    assert_eq!(idp.requests_to(OPENID_CONFIGURATION).await, 1, "fresh for 600 s");
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.exchange_opaque("third", &[]).await.status(), 200);

    assert_eq!(idp.requests_to(OPENID_CONFIGURATION).await, 2);
}

#[tokio::test]
async fn a_signed_introspection_answer_is_verified_with_the_discovered_jwks() {
    let idp = FakeIdp::start().await;
    let mut upstream = discovering_introspection(&idp);
    upstream.introspection_format = AnswerFormat::Jwt;
    let app = TestApp::builder(&idp).with_opaque_upstream(upstream).spawn().await;
    let issuer = tenant_issuer(&idp);
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&issuer)).await;
    let members = json!({"active": true, "sub": "all-discovered", "exp": app.now() + 600});
    idp.introspection_answers_signed(
        "all-discovered",
        &idp.signed_introspection(&issuer, UPSTREAM_CLIENT_ID, app.now(), members),
    )
    .await;

    let response = app.exchange_opaque("all-discovered", &[]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        (idp.jwks_fetches().await, idp.requests_to(OPENID_CONFIGURATION).await),
        (1, 1),
        "one metadata fetch serves both"
    );
}

// check-config --online

fn discovering_toml(issuer: &str) -> String {
    format!(
        "name = \"tenant\"\nissuer = \"{issuer}\"\nintrospection_endpoint = \"discover\"\n\
         introspection_format = \"jwt\"\nclient_id = \"{UPSTREAM_CLIENT_ID}\"\nclient_secret = \"{UPSTREAM_CLIENT_SECRET}\"\n"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn check_config_online_prints_what_each_upstream_discovered() {
    let idp = FakeIdp::start().await;
    let document: Value = idp.metadata_document(&tenant_issuer(&idp));
    idp.publish_metadata(OPENID_CONFIGURATION, document).await;

    let output = check_config_online(&discovering_toml(&tenant_issuer(&idp))).await;

    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    let base = idp.issuer();
    for line in [
        format!("upstream \"tenant\": metadata at {base}{OPENID_CONFIGURATION}"),
        format!("  jwks_uri: {base}{JWKS_PATH} (discovered)"),
        format!("  introspection_endpoint: {base}{INTROSPECT_PATH} (discovered)"),
        "  introspection_signing_alg_values_supported: RS256".to_owned(),
    ] {
        assert!(stdout.lines().any(|printed| printed == line), "{line:?} in\n{stdout}");
    }
}

#[tokio::test]
async fn check_config_online_fails_when_the_provider_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let output = check_config_online(&discovering_toml(&format!("http://{closed}/tenant"))).await;

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("upstream \"tenant\"") && stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test]
async fn check_config_online_fails_when_the_metadata_names_another_issuer() {
    let idp = FakeIdp::start().await;
    idp.publish_metadata(OPENID_CONFIGURATION, idp.metadata_document(&idp.issuer())).await;

    let output = check_config_online(&discovering_toml(&tenant_issuer(&idp))).await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("upstream \"tenant\"") && stderr.contains("names the issuer"), "{stderr}");
}
