//! One integration-test binary: every test spawns its own app on port 0 with a fresh database,
//! a fixed clock and a wiremock upstream identity provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod cache_contract;
mod cli;
mod client_auth;
mod discovery;
mod identity_cache;
mod jwt_subjects;
mod keys;
mod opaque_subjects;
mod openapi;
mod revocation;
mod token_exchange;
