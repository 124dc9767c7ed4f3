use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, get, web};

use crate::keys::{JWKS_MAX_AGE, JwkSet};
use crate::state::AppState;

/// Our public signing keys (RFC 7517 §5): what downstream services verify minted tokens with.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses((status = 200, description = "Public keys only; cacheable", body = JwkSet)),
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, format!("public, max-age={}", JWKS_MAX_AGE.as_secs())))
        .json(state.keys.published(state.clock.now()))
}
