use serde::Serialize;
use utoipa::ToSchema;

use super::{ASSERTION_SIGNING_ALGORITHMS, AuthMethod, GRANT_TYPE_TOKEN_EXCHANGE};

/// RFC 8414 §2 authorization server metadata. `response_types_supported` is left out on
/// purpose: we have no authorization endpoint, and §3.2 forbids empty arrays. `private_key_jwt`
/// and its algorithms are advertised only while at least one client is configured for it
/// ([`ServerMetadata::with_private_key_jwt`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub service_documentation: String,
    #[serde(skip)]
    issuer_path: String,
}

impl ServerMetadata {
    pub fn new(issuer: &str, scopes: Vec<String>) -> Self {
        let auth_methods =
            || [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost].map(|m| m.as_str().to_owned()).to_vec();
        let issuer_path =
            url::Url::parse(issuer).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
        Self {
            issuer: issuer.to_owned(),
            token_endpoint: format!("{issuer}/token"),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            grant_types_supported: vec![GRANT_TYPE_TOKEN_EXCHANGE.to_owned()],
            token_endpoint_auth_methods_supported: auth_methods(),
            token_endpoint_auth_signing_alg_values_supported: Vec::new(),
            scopes_supported: scopes,
            revocation_endpoint: format!("{issuer}/revoke"),
            revocation_endpoint_auth_methods_supported: auth_methods(),
            revocation_endpoint_auth_signing_alg_values_supported: Vec::new(),
            service_documentation: format!("{issuer}/swagger-ui/"),
            issuer_path,
        }
    }

    /// The document with `private_key_jwt` and the assertion algorithms we accept added, for
    /// while some client authenticates that way.
    pub fn with_private_key_jwt(&self) -> Self {
        let mut document = self.clone();
        let algorithms = ASSERTION_SIGNING_ALGORITHMS.map(str::to_owned).to_vec();
        for methods in [
            &mut document.token_endpoint_auth_methods_supported,
            &mut document.revocation_endpoint_auth_methods_supported,
        ] {
            methods.push(AuthMethod::PrivateKeyJwt.as_str().to_owned());
        }
        document.token_endpoint_auth_signing_alg_values_supported = algorithms.clone();
        document.revocation_endpoint_auth_signing_alg_values_supported = algorithms;
        document
    }

    /// The issuer's path component, empty for an issuer at the host root.
    pub fn issuer_path(&self) -> &str {
        &self.issuer_path
    }
}
