//! Thin HTTP adapters: extract, convert to domain types, call one use case, map the result.

mod docs;
mod error;
mod form;
mod health;
mod jwks;
mod metadata;
mod metrics;
mod revoke;
mod token;

use actix_web::{HttpResponse, web};
use utoipa_actix_web::service_config::ServiceConfig;

pub use docs::{ApiDoc, openapi};

/// Registers every documented route; the OpenAPI document is collected from exactly these.
pub fn routes(config: &mut ServiceConfig) {
    config
        .service(token::token)
        .service(revoke::revoke)
        .service(revoke::purge)
        .service(jwks::jwks)
        .service(metadata::metadata)
        .service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics);
}

/// Routes that exist but are not part of the documented API surface.
pub fn undocumented_routes(config: &mut web::ServiceConfig) {
    config
        // Reached only when the POST route above did not match the method (RFC 9110 §15.5.6).
        .service(web::resource(["/token", "/revoke", "/admin/purge"]).to(method_not_allowed))
        .service(
            web::resource("/.well-known/oauth-authorization-server/{issuer_path:.*}").to(metadata::metadata_with_path),
        );
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header(("Allow", "POST")).json(crate::oauth::ErrorResponse {
        error: "invalid_request".into(),
        error_description: Some("use POST".into()),
    })
}

pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found" }))
}
