//! One integration-test binary: every test spawns its own app on port 0 with a fresh database,
//! a fixed clock and a wiremock upstream identity provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod cli;
mod client_auth;
mod discovery;
mod jwt_subjects;
mod keys;
mod openapi;
mod token_exchange;
