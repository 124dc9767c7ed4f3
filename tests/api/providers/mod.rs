//! Against real identity providers, as a deployment meets them: Keycloak 26 (JWT access tokens,
//! lightweight ones, introspection, the admin REST API) and panva's oidc-provider (opaque
//! tokens, introspection, userinfo, revocation).
//!
//! `scripts/test` starts each provider once per run, on free ports and with fresh data, and
//! names them in `KEYCLOAK_URL` (with `KEYCLOAK_ADMIN_CLIENT_ID`/`_SECRET`) and
//! `OIDC_PROVIDER_URL`; without those variables these tests fail and say so. `cargo test
//! --test api providers` runs them alone. Each test has an app of its own on a clock that starts
//! at the real time, and its own users or realm wherever it changes them.

mod harness;
mod keycloak;
mod keycloak_server;
mod oidc_provider;
