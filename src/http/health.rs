use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a check failed.
    status: &'static str,
    /// Each check by name: `ok` or what is wrong.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    checks: std::collections::BTreeMap<&'static str, &'static str>,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves HTTP", body = Health)),
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", checks: Default::default() })
}

/// Readiness: the database answers and a signing key is loaded; the cache check reports
/// `degraded` when Redis does not answer, and `upstreams` reports `misconfigured` while an
/// upstream refuses us, without making the service unready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: database and signing key are available", body = Health),
        (status = 503, description = "Not ready", body = Health),
    ),
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = std::collections::BTreeMap::new();
    let database_ok = state.database.is_reachable().await;
    checks.insert("database", if database_ok { "ok" } else { "unreachable" });
    let key_ok = state.keys.active(state.clock.now()).is_some();
    checks.insert("signing_key", if key_ok { "ok" } else { "missing" });
    // Without Redis, exchanges go on from the in-process cache and the upstream: degraded, ready.
    // A provider that refuses us affects its tokens only: reported, the service stays ready.
    let misconfigured = state.identities.misconfigured_upstreams();
    checks.insert("upstreams", if misconfigured.is_empty() { "ok" } else { "misconfigured" });
    match state.identities.shared_cache_healthy().await {
        Some(true) => checks.insert("cache", "ok"),
        Some(false) => checks.insert("cache", "degraded"),
        None => checks.insert("cache", "in_process"),
    };
    if database_ok && key_ok {
        HttpResponse::Ok().json(Health { status: "ok", checks })
    } else {
        HttpResponse::ServiceUnavailable().json(Health { status: "unavailable", checks })
    }
}
