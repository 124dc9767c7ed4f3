use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now();
    let signing_for = state.keys.active(now).map(|active| active.since.until(now));
    state.metrics.signing_keys(signing_for, state.keys.published(now).keys.len());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
