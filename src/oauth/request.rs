//! The requests of the OAuth endpoints: one wire type per request, which both documents the
//! request (OpenAPI) and is what the body is decoded into, then one typed request made from it.

use serde::Deserialize;
use utoipa::ToSchema;

use super::form::{present, required};
use super::{ClientAuthFields, GRANT_TYPE_TOKEN_EXCHANGE, OAuthError, TokenType};
use crate::vocabulary::{Audience, Resource, ScopeSet, SubjectToken};

/// Longest subject or actor token we look at; real JWTs and opaque tokens are far shorter.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Token types we can validate as a subject or actor.
const ACCEPTED_INPUT_TYPES: [TokenType; 3] = [TokenType::AccessToken, TokenType::Jwt, TokenType::IdToken];
/// Token types we can issue: a JWT access token, also when asked for as a plain JWT.
const ISSUABLE_TYPES: [TokenType; 2] = [TokenType::AccessToken, TokenType::Jwt];

/// The RFC 8693 §2.1 request form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    #[schema(value_type = String, pattern = "^urn:ietf:params:oauth:grant-type:token-exchange$")]
    grant_type: Option<String>,
    /// The token to exchange.
    #[schema(value_type = String, min_length = 1, max_length = 16384)]
    subject_token: Option<SubjectToken>,
    /// `urn:ietf:params:oauth:token-type:access_token`, `...:jwt` or `...:id_token`.
    #[schema(value_type = String, pattern = "^urn:ietf:params:oauth:token-type:(access_token|jwt|id_token)$")]
    subject_token_type: Option<String>,
    /// `...:access_token` (the default) or `...:jwt`. Empty counts as omitted (RFC 6749 §3.2).
    #[serde(default)]
    #[schema(value_type = String, pattern = "^(urn:ietf:params:oauth:token-type:(access_token|jwt))?$")]
    requested_token_type: Option<String>,
    /// Logical name of a target service; may repeat.
    #[serde(default)]
    audience: Vec<String>,
    /// Absolute URI of a target service, without fragment; may repeat.
    #[serde(default)]
    #[schema(value_type = Vec<String>, format = "uri")]
    resource: Vec<String>,
    /// Space-delimited scope tokens (RFC 6749 §3.3); only ever narrows what the subject holds.
    #[serde(default)]
    #[schema(value_type = String, pattern = "^[\\x21\\x23-\\x5B\\x5D-\\x7E ]*$")]
    scope: Option<String>,
    /// A token for the party acting on the subject's behalf (goes into `act`).
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 16384)]
    actor_token: Option<SubjectToken>,
    /// Required with `actor_token`, forbidden without it.
    #[serde(default)]
    #[schema(value_type = String, pattern = "^urn:ietf:params:oauth:token-type:(access_token|jwt|id_token)$")]
    actor_token_type: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub client: ClientAuthFields,
}

/// A token presented for validation, its declared type checked.
#[derive(Debug)]
pub struct PresentedToken {
    pub token: SubjectToken,
}

/// An RFC 8693 §2.1 request, typed.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub subject: PresentedToken,
    pub actor: Option<PresentedToken>,
    pub requested_token_type: TokenType,
    pub audiences: Vec<Audience>,
    pub resources: Vec<Resource>,
    pub scope: Option<ScopeSet>,
}

impl TryFrom<TokenExchangeForm> for ExchangeRequest {
    type Error = OAuthError;

    fn try_from(form: TokenExchangeForm) -> Result<Self, OAuthError> {
        if required(&form.grant_type, "grant_type")? != GRANT_TYPE_TOKEN_EXCHANGE {
            return Err(OAuthError::UnsupportedGrantType(
                "only urn:ietf:params:oauth:grant-type:token-exchange is supported".into(),
            ));
        }
        let subject = presented_token(form.subject_token, &form.subject_token_type, "subject_token")?
            .ok_or_else(|| OAuthError::invalid_request("missing parameter subject_token"))?;
        let actor = presented_token(form.actor_token, &form.actor_token_type, "actor_token")?;
        Ok(Self {
            subject,
            actor,
            requested_token_type: requested_token_type(&form.requested_token_type)?,
            audiences: form.audience.iter().filter(|a| !a.is_empty()).map(Audience::new).collect(),
            resources: form
                .resource
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| Resource::parse(r).map_err(|reason| OAuthError::InvalidTarget(reason.into())))
                .collect::<Result<_, _>>()?,
            scope: present(&form.scope).map(parse_scope).transpose()?,
        })
    }
}

/// The RFC 7009 §2.1 revocation request form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RevocationForm {
    /// The subject token to forget and refuse from now on.
    #[schema(value_type = String, min_length = 1, max_length = 16384)]
    token: Option<SubjectToken>,
    /// Accepted and ignored: every cached verdict on the token is dropped.
    #[serde(default)]
    #[schema(value_type = String)]
    #[expect(dead_code, reason = "a documented wire parameter that changes nothing")]
    token_type_hint: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub client: ClientAuthFields,
}

/// `token` of RFC 7009 §2.1, typed.
#[derive(Debug)]
pub struct RevocationRequest {
    pub token: SubjectToken,
}

impl TryFrom<RevocationForm> for RevocationRequest {
    type Error = OAuthError;

    fn try_from(form: RevocationForm) -> Result<Self, OAuthError> {
        let token = form
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("missing parameter token"))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OAuthError::invalid_request("token is too long"));
        }
        Ok(Self { token })
    }
}

/// Reads a token and its type; a type without a token, or a token without a type, is invalid
/// (RFC 8693 §2.1: `actor_token_type` is required with `actor_token` and forbidden without it).
fn presented_token(
    token: Option<SubjectToken>,
    token_type: &Option<String>,
    token_param: &'static str,
) -> Result<Option<PresentedToken>, OAuthError> {
    let type_param = if token_param == "subject_token" { "subject_token_type" } else { "actor_token_type" };
    match (token.filter(|t| !t.is_empty()), present(token_type)) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OAuthError::invalid_request(format!("{type_param} given without {token_param}"))),
        (Some(_), None) => Err(OAuthError::invalid_request(format!("missing parameter {type_param}"))),
        (Some(token), Some(type_uri)) => {
            if token.len() > MAX_TOKEN_BYTES {
                return Err(OAuthError::invalid_request(format!("{token_param} is too long")));
            }
            if !TokenType::from_uri(type_uri).is_some_and(|t| ACCEPTED_INPUT_TYPES.contains(&t)) {
                return Err(OAuthError::invalid_request(format!("unsupported {type_param}")));
            }
            Ok(Some(PresentedToken { token }))
        }
    }
}

fn requested_token_type(value: &Option<String>) -> Result<TokenType, OAuthError> {
    match present(value) {
        None => Ok(TokenType::AccessToken),
        Some(uri) => TokenType::from_uri(uri)
            .filter(|t| ISSUABLE_TYPES.contains(t))
            .ok_or_else(|| OAuthError::invalid_request("unsupported requested_token_type")),
    }
}

fn parse_scope(value: &str) -> Result<ScopeSet, OAuthError> {
    ScopeSet::parse(value).ok_or_else(|| OAuthError::InvalidScope("scope holds a malformed scope token".into()))
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema as _;

    use super::*;

    /// The pattern the document must state for a parameter that accepts exactly `types`.
    fn pattern_of(types: &[TokenType]) -> String {
        let names: Vec<&str> =
            types.iter().map(|t| t.uri().trim_start_matches("urn:ietf:params:oauth:token-type:")).collect();
        format!("^urn:ietf:params:oauth:token-type:({})$", names.join("|"))
    }

    fn documented_pattern(name: &str) -> String {
        let schema = serde_json::to_value(TokenExchangeForm::schema()).unwrap_or_default();
        schema["properties"][name]["pattern"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_documented_token_type_patterns_are_the_ones_the_parser_accepts() {
        assert_eq!(documented_pattern("subject_token_type"), pattern_of(&ACCEPTED_INPUT_TYPES));
        assert_eq!(documented_pattern("actor_token_type"), pattern_of(&ACCEPTED_INPUT_TYPES));
        // Optional: an empty value counts as omitted (RFC 6749 §3.2).
        let optional = pattern_of(&ISSUABLE_TYPES).replacen("^", "^(", 1).replacen("$", ")?$", 1);
        assert_eq!(documented_pattern("requested_token_type"), optional);
    }
}
