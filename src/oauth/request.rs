use super::{FormParams, GRANT_TYPE_TOKEN_EXCHANGE, OAuthError, ScopeSet, TokenType};
use crate::subject::SubjectToken;

/// Longest subject or actor token we look at; real JWTs and opaque tokens are far shorter.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token presented for validation together with its declared type.
#[derive(Debug)]
pub struct PresentedToken {
    pub token: SubjectToken,
    pub token_type: TokenType,
}

/// An RFC 8693 §2.1 request, parsed once at the edge.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub subject: PresentedToken,
    pub actor: Option<PresentedToken>,
    pub requested_token_type: TokenType,
    pub audiences: Vec<String>,
    /// Absolute URIs without fragment, as the client wrote them.
    pub resources: Vec<String>,
    pub scope: Option<ScopeSet>,
}

/// Token types we can validate as a subject or actor.
const ACCEPTED_INPUT_TYPES: [TokenType; 3] = [TokenType::AccessToken, TokenType::Jwt, TokenType::IdToken];
/// Token types we can issue: a JWT access token, also when asked for as a plain JWT.
const ISSUABLE_TYPES: [TokenType; 2] = [TokenType::AccessToken, TokenType::Jwt];

impl ExchangeRequest {
    pub fn from_form(form: &FormParams) -> Result<Self, OAuthError> {
        let grant_type = form.require("grant_type")?;
        if grant_type != GRANT_TYPE_TOKEN_EXCHANGE {
            return Err(OAuthError::UnsupportedGrantType(
                "only urn:ietf:params:oauth:grant-type:token-exchange is supported".into(),
            ));
        }
        let subject = presented_token(form, "subject_token", "subject_token_type")?
            .ok_or_else(|| OAuthError::invalid_request("missing parameter subject_token"))?;
        let actor = presented_token(form, "actor_token", "actor_token_type")?;
        Ok(Self {
            subject,
            actor,
            requested_token_type: requested_token_type(form)?,
            audiences: form.all("audience").map(str::to_owned).collect(),
            resources: form.all("resource").map(parse_resource).collect::<Result<_, _>>()?,
            scope: form.get("scope").map(parse_scope).transpose()?,
        })
    }
}

/// `token` and `token_type_hint` of RFC 7009 §2.1.
#[derive(Debug)]
pub struct RevocationRequest {
    pub token: SubjectToken,
}

impl RevocationRequest {
    pub fn from_form(form: &FormParams) -> Result<Self, OAuthError> {
        let token = form.require("token")?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OAuthError::invalid_request("token is too long"));
        }
        Ok(Self { token: SubjectToken::new(token.to_owned()) })
    }
}

/// Reads a token and its type; a type without a token, or a token without a type, is invalid
/// (RFC 8693 §2.1: `actor_token_type` is required with `actor_token` and forbidden without it).
fn presented_token(
    form: &FormParams,
    token_param: &'static str,
    type_param: &'static str,
) -> Result<Option<PresentedToken>, OAuthError> {
    match (form.get(token_param), form.get(type_param)) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OAuthError::invalid_request(format!("{type_param} given without {token_param}"))),
        (Some(_), None) => Err(OAuthError::invalid_request(format!("missing parameter {type_param}"))),
        (Some(token), Some(type_uri)) => {
            if token.len() > MAX_TOKEN_BYTES {
                return Err(OAuthError::invalid_request(format!("{token_param} is too long")));
            }
            let token_type = TokenType::from_uri(type_uri)
                .filter(|t| ACCEPTED_INPUT_TYPES.contains(t))
                .ok_or_else(|| OAuthError::invalid_request(format!("unsupported {type_param}")))?;
            Ok(Some(PresentedToken { token: SubjectToken::new(token.to_owned()), token_type }))
        }
    }
}

fn requested_token_type(form: &FormParams) -> Result<TokenType, OAuthError> {
    match form.get("requested_token_type") {
        None => Ok(TokenType::AccessToken),
        Some(uri) => TokenType::from_uri(uri)
            .filter(|t| ISSUABLE_TYPES.contains(t))
            .ok_or_else(|| OAuthError::invalid_request("unsupported requested_token_type")),
    }
}

/// RFC 8693 §2.1: an absolute URI (RFC 3986 §4.3), without a fragment.
fn parse_resource(value: &str) -> Result<String, OAuthError> {
    url::Url::parse(value).map_err(|_| OAuthError::InvalidTarget("resource must be an absolute URI".into()))?;
    if value.contains('#') {
        return Err(OAuthError::InvalidTarget("resource must not contain a fragment".into()));
    }
    Ok(value.to_owned())
}

fn parse_scope(value: &str) -> Result<ScopeSet, OAuthError> {
    ScopeSet::parse(value).ok_or_else(|| OAuthError::InvalidScope("scope holds a malformed scope token".into()))
}
