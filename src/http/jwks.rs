use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, get, web};

use crate::keys::JwkSet;
use crate::state::AppState;

/// How long verifiers may keep our key set before asking again.
const JWKS_MAX_AGE_SECS: u32 = 300;

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
        .insert_header((CACHE_CONTROL, format!("public, max-age={JWKS_MAX_AGE_SECS}")))
        .json(state.keys.jwks())
}
