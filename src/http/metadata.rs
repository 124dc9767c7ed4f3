use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, get, web};

use crate::oauth::{OAuthError, ServerMetadata};
use crate::state::AppState;

/// Authorization server metadata (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata)),
)]
#[get("/.well-known/oauth-authorization-server")]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let document = state.metadata.current();
    if document.issuer_path().is_empty() { Ok(respond(&document, &state)) } else { Err(OAuthError::NotFound) }
}

/// RFC 8414 §3: for an issuer with a path, the well-known segment goes before that path.
pub async fn metadata_with_path(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let document = state.metadata.current();
    if document.issuer_path() == format!("/{}", path.into_inner()) {
        Ok(respond(&document, &state))
    } else {
        Err(OAuthError::NotFound)
    }
}

/// `private_key_jwt` is advertised while some client is configured for it.
fn respond(document: &ServerMetadata, state: &AppState) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header((CACHE_CONTROL, "public, max-age=300"));
    if state.clients.current().uses_private_key_jwt() {
        response.json(document.with_private_key_jwt())
    } else {
        response.json(document)
    }
}
