//! token-exchange: an RFC 8693 security token service. Gateways trade upstream access tokens
//! for short-lived internal JWTs that downstream services verify offline with our JWKS.
//!
//! `ARCHITECTURE.md` at the repository root maps the modules, the flow of an exchange and the
//! order in which modules may import each other. Public modules are those the binary, the
//! integration tests and the benchmark need; the rest is crate-private.

pub mod cache;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub(crate) mod demo;
pub(crate) mod exchange;
pub mod gateway;
pub(crate) mod grpc;
pub mod http;
pub(crate) mod identity;
pub mod keys;
pub(crate) mod live;
pub mod metrics;
pub(crate) mod oauth;
pub(crate) mod per_thread;
pub mod rate_limit;
pub(crate) mod report;
pub mod startup;
pub(crate) mod state;
pub mod storage;
pub(crate) mod telemetry;
pub(crate) mod upstream;
pub mod vocabulary;
