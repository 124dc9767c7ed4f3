use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};

use crate::gateway::Refused;
use crate::oauth::OAuthError;

pub const REALM: &str = "token-exchange";

/// The one mapping from errors to HTTP, for every endpoint and for 404 and 405: status, JSON
/// body, no caching, a challenge on 401, `Allow` on 405, and `Retry-After` where the client
/// should come back later. Logging happens once, in the access log.
impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = super::no_store(HttpResponse::build(self.status_code()));
        if let Some(challenge) = self.challenge(REALM) {
            response.insert_header((WWW_AUTHENTICATE, challenge));
        }
        if let Some(allowed) = self.allowed_methods() {
            response.insert_header((ALLOW, allowed));
        }
        if let Some(wait) = self.retry_after() {
            response.insert_header((RETRY_AFTER, wait.as_secs().to_string()));
        }
        if matches!(self, OAuthError::BodyTimeout) {
            response.force_close();
        }
        response.json(self.to_response())
    }
}

/// Forward-auth refusals (RFC 6750 §3): the status a proxy acts on, the Bearer challenge, and an
/// empty body, which every proxy passes on unchanged.
impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.refusal.status()).unwrap_or(StatusCode::FORBIDDEN)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = super::no_store(HttpResponse::build(self.status_code()));
        if let Some(challenge) = self.refusal.challenge(&self.realm) {
            response.insert_header((WWW_AUTHENTICATE, challenge));
        }
        if let Some(wait) = self.refusal.retry_after() {
            response.insert_header((RETRY_AFTER, wait.as_secs().to_string()));
        }
        response.finish()
    }
}
