use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};

use crate::oauth::OAuthError;

pub const REALM: &str = "token-exchange";

/// One mapping from OAuth errors to HTTP: status, JSON body, no caching, a challenge on 401
/// and `Retry-After` where the client should come back later.
impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = super::no_store(HttpResponse::build(self.status_code()));
        if let Some(challenge) = self.challenge(REALM) {
            response.insert_header((WWW_AUTHENTICATE, challenge));
        }
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.to_response())
    }
}
