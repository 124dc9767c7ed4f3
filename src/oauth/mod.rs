//! The OAuth wire vocabulary: the only module that knows the RFC wire strings (grant and token
//! type URIs, error codes, parameter names) and turns wire input into typed values.

mod client_credentials;
mod error;
mod form;
mod metadata;
mod request;
mod response;
mod token_type;

pub use client_credentials::{
    ASSERTION_SIGNING_ALGORITHMS, AuthMethod, ClientAuthFields, ClientCredentials, Presented,
};
pub use error::{Cause, ErrorResponse, OAuthError};
pub use form::{decode_form, present, required};
pub use metadata::ServerMetadata;
pub use request::{
    ExchangeRequest, MAX_TOKEN_BYTES, PresentedToken, RevocationForm, RevocationRequest, TokenExchangeForm,
};
pub use response::TokenResponse;
pub use token_type::{GRANT_TYPE_TOKEN_EXCHANGE, TokenType};
