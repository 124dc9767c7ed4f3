//! Upstreams over HTTPS whose certificate a private CA signed, as an identity provider inside
//! the network often has: trusted through `upstream_http.ca_file`, refused without it. The
//! upstream is the identity provider double behind nginx as its HTTPS front
//! (tests/proxies/nginx-tls-front.conf), with the certificate `scripts/test` makes for
//! 127.0.0.1 (`TEST_TLS_SERVER_CERT`, signed by `TEST_TLS_CA`).

use crate::helpers::*;

async fn app_trusting(idp: &FakeIdp, endpoint: &str, ca_file: Option<String>) -> TestApp {
    TestApp::builder(idp)
        .with_opaque_upstream(idp.introspection_upstream_at(endpoint))
        .configure(|s| s.upstream_http.ca_file = ca_file.map(Into::into))
        .spawn()
        .await
}

#[tokio::test]
async fn an_upstream_whose_certificate_the_configured_ca_signed_is_trusted() {
    let idp = FakeIdp::start().await;
    let front = https_front(&idp).await;
    let app = app_trusting(&idp, &https_introspection(&front), Some(required_env("TEST_TLS_CA"))).await;
    idp.introspection_active("over-tls", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("over-tls", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn an_upstream_whose_certificate_no_trusted_ca_signed_is_not_asked() {
    let idp = FakeIdp::start().await;
    let front = https_front(&idp).await;
    let app = app_trusting(&idp, &https_introspection(&front), None).await;
    idp.introspection_active("untrusted", app.now() + 600).await;

    assert_oauth_error(app.exchange_opaque("untrusted", &[]).await, 503, "temporarily_unavailable").await;
    assert_eq!(idp.introspections().await, 0, "the token never left over an unverified connection");
}
