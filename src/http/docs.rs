use actix_web::App;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

/// Everything in the API document that is not collected from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "token-exchange",
        description = "OAuth 2.0 Token Exchange (RFC 8693): trade upstream access tokens for short-lived internal JWTs.",
    ),
    tags(
        (name = "token", description = "Token exchange"),
        (name = "discovery", description = "Keys and metadata for verifiers and clients"),
        (name = "operations", description = "Health for orchestrators"),
    ),
    modifiers(&ClientAuthentication),
)]
pub struct ApiDoc;

struct ClientAuthentication;

impl Modify for ClientAuthentication {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("client_secret_basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// The API document, generated from the same route registration the server uses.
pub fn openapi() -> utoipa::openapi::OpenApi {
    App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(super::routes).split_for_parts().1
}
