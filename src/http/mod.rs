//! Thin HTTP adapters: extract, convert to domain types, call one use case, map the result.

mod admin;
mod client_auth;
mod docs;
mod error;
mod form;
mod forward_auth;
mod health;
mod jwks;
mod metadata;
mod metrics;
mod middleware;
mod rate_limit;
mod revoke;
mod token;

use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use utoipa_actix_web::service_config::ServiceConfig;

pub use docs::{ApiDoc, complete, openapi};
pub use middleware::{head_as_get, listener_gate, security_headers};

use crate::oauth::OAuthError;

/// Registers every documented route; the OpenAPI document is collected from exactly these.
pub fn routes(config: &mut ServiceConfig) {
    config
        .service(token::token)
        .service(revoke::revoke)
        .service(admin::purge)
        .service(jwks::jwks)
        .service(metadata::metadata)
        .service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics);
}

/// Routes that exist but are not part of the documented API surface.
pub fn undocumented_routes(config: &mut web::ServiceConfig) {
    config
        // Reached only when a documented route did not match the method (RFC 9110 §15.5.6).
        .service(web::resource(POST_ONLY).to(|| method_not_allowed("POST")))
        .service(web::resource(GET_ONLY).to(|| method_not_allowed("GET")))
        .service(
            web::resource("/.well-known/oauth-authorization-server/{issuer_path:.*}").to(metadata::metadata_with_path),
        )
        // Every method: a gateway forwards whatever its client sent (documented in `docs.rs`).
        .service(web::resource(["/forward-auth", "/forward-auth/{tail:.*}"]).to(forward_auth::forward_auth));
}

const POST_ONLY: [&str; 3] = ["/token", "/revoke", "/admin/purge"];
const GET_ONLY: [&str; 5] =
    ["/.well-known/jwks.json", "/.well-known/oauth-authorization-server", "/healthz", "/readyz", "/metrics"];

async fn method_not_allowed(allowed: &'static str) -> Result<HttpResponse, OAuthError> {
    Err(OAuthError::MethodNotAllowed { allowed })
}

/// RFC 6749 §5.1: responses that carry tokens, or answer about them, are never cached.
fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header((CACHE_CONTROL, "no-store")).insert_header((PRAGMA, "no-cache"));
    builder
}

/// Every path no route matches.
pub async fn not_found() -> Result<HttpResponse, OAuthError> {
    Err(OAuthError::NotFound)
}
