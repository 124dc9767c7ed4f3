//! token-exchange: an RFC 8693 security token service. Gateways trade upstream access tokens
//! for short-lived internal JWTs that downstream services verify offline with our JWKS.
//!
//! `ARCHITECTURE.md` at the repository root maps the modules and the flow of an exchange.

pub mod cache;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod exchange;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod startup;
pub mod state;
pub mod storage;
pub mod subject;
pub mod telemetry;
pub mod upstream;
