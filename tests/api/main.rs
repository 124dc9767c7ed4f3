//! One integration-test binary: every test spawns its own app on port 0 with a fresh database,
//! a fixed clock and a wiremock upstream identity provider, composed with `TestApp::builder`.
//! `TEST_LOG=1` shows the logs of the apps a test runs (`RUST_LOG` filters them).
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed step fails the test, loudly")]

mod helpers;

mod auth0_tokens;
mod cache_contract;
mod cli;
mod client_auth;
mod dashboards;
mod demo;
mod discovery;
mod e2e;
mod egress;
mod fleet;
mod forward_auth;
mod hardening_clients;
mod hardening_http;
mod hardening_revocation;
mod hardening_upstreams;
mod harness;
mod identity_cache;
mod jwt_subjects;
mod key_custody;
mod keys;
mod mixed_upstreams;
mod opaque_subjects;
mod openapi;
mod private_key_jwt;
mod providers;
mod rate_limits;
mod redis_topologies;
mod reload;
mod revocation;
mod signed_answers;
mod three_replicas;
mod token_exchange;
mod traces;
mod upstream_discovery;
mod upstream_protection;
mod upstream_tls;
