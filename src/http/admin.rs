use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::client_auth::authenticated_client;
use super::form::read_form;
use super::no_store;
use crate::oauth::{ClientAuthFields, ErrorResponse, OAuthError, present, required};
use crate::state::AppState;

/// The purge request: every cached identity of one subject.
#[derive(Deserialize, ToSchema)]
pub struct PurgeForm {
    /// The subject (`sub`) whose cached identities are dropped.
    #[schema(value_type = String, min_length = 1)]
    sub: Option<String>,
    /// Only identities from this issuer; all issuers when absent.
    #[serde(default)]
    #[schema(value_type = String)]
    iss: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    client: ClientAuthFields,
}

#[derive(Serialize, ToSchema)]
pub struct PurgeResult {
    /// Cache entries dropped here and in the shared cache.
    purged: u64,
}

/// Drop every cached identity of a subject on all replicas (admin clients only).
///
/// The client authenticates with HTTP Basic (`client_secret_basic`), with `client_id` and
/// `client_secret` in the body (`client_secret_post`), or with a signed JWT in
/// `client_assertion` and `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
/// (`private_key_jwt`, RFC 7523), one method only.
#[utoipa::path(
    post,
    path = "/admin/purge",
    tag = "operations",
    request_body(content = PurgeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Purged", body = PurgeResult),
        (status = 400, description = "invalid_request, or unauthorized_client for a client without admin rights", body = ErrorResponse),
        (status = 401, description = "invalid_client", body = ErrorResponse),
    ),
    security(("client_secret_basic" = []), ()),
)]
#[post("/admin/purge")]
pub async fn purge(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form: PurgeForm = read_form(&request, body, &state.bodies).await?;
    let client = authenticated_client(&request, &form.client, &state).await?;
    if !client.admin {
        return Err(OAuthError::UnauthorizedClient("this client may not purge the cache".into()));
    }
    let subject = required(&form.sub, "sub")?;
    let purged = state.identities.purge_subject(present(&form.iss), subject).await;
    Ok(no_store(HttpResponse::Ok()).json(PurgeResult { purged }))
}
