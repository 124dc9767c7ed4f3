//! The OAuth vocabulary: the only module that knows the RFC wire strings (grant and token type
//! URIs, error codes, parameter names) and turns wire input into typed values.

mod client_credentials;
mod error;
mod form;
mod metadata;
mod request;
mod response;
mod scope;
mod token_type;

pub use client_credentials::{AuthMethod, ClientCredentials, ClientSecret};
pub use error::{ErrorResponse, OAuthError};
pub use form::FormParams;
pub use metadata::ServerMetadata;
pub use request::{ExchangeRequest, PresentedToken, RevocationRequest};
pub use response::TokenResponse;
pub use scope::{ScopeSet, ScopeToken};
pub use token_type::{GRANT_TYPE_TOKEN_EXCHANGE, TokenType};
