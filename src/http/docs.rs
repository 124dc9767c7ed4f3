use actix_web::App;
use utoipa::openapi::schema::ArrayItems;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
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
        (name = "gateway", description = "Decisions for gateways: a request's bearer token in, an internal token out"),
    ),
    paths(super::forward_auth::forward_auth),
    modifiers(&ClientAuthentication),
)]
pub struct ApiDoc;

struct ClientAuthentication;

impl Modify for ClientAuthentication {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("client_secret_basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The API document, generated from the same route registration the server uses.
pub fn openapi() -> utoipa::openapi::OpenApi {
    complete(App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(super::routes).split_for_parts().1)
}

/// What the derives cannot say, added once the routes have registered their schemas (RFC 8693
/// §2.1): `actor_token_type` is required with `actor_token` and forbidden without it, and a
/// `resource` is an absolute URI without a fragment. And the decision endpoint, one handler for
/// every method, gets an operation id per method, as OpenAPI requires them unique.
pub fn complete(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    if let Some(item) = document.paths.paths.get_mut("/forward-auth") {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                operation.operation_id = Some(format!("forward_auth_{method}"));
            }
        }
    }
    let form = document.components.as_mut().and_then(|components| components.schemas.get_mut("TokenExchangeForm"));
    if let Some(RefOr::T(Schema::Object(form))) = form {
        let pairs = serde_json::json!({ "actor_token": ["actor_token_type"], "actor_token_type": ["actor_token"] });
        form.extensions.get_or_insert_with(Default::default).insert("dependentRequired".into(), pairs);
        if let Some(RefOr::T(Schema::Array(resource))) = form.properties.get_mut("resource")
            && let ArrayItems::RefOrSchema(item) = &mut resource.items
            && let RefOr::T(Schema::Object(item)) = item.as_mut()
        {
            item.pattern = Some("^[^#]*$".into());
        }
    }
    document
}
