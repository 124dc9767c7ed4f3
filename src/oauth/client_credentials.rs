use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use serde::Deserialize;

use super::OAuthError;
use super::form::present;
use crate::vocabulary::ClientSecret;

/// How a client proved who it is (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with the client's own key (RFC 7523 §2.2, OIDC Core §9).
    PrivateKeyJwt,
}

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The JWS algorithms a client assertion may be signed with: asymmetric only, never `none`
/// nor HMAC (a shared secret would be a password again).
pub const ASSERTION_SIGNING_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// How many bytes of assertion we look at; anything longer is refused unread.
const MAX_ASSERTION_BYTES: usize = 8 * 1024;

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Client credentials sent in the body (`client_secret_post`, RFC 6749 §2.3.1). Part of every
/// form a client authenticates with. The forms' schemas leave these fields out: whether they
/// may be sent depends on the `Authorization` header, which a body schema cannot see, so the
/// operations describe `client_secret_post` in words.
#[derive(Debug, Default, Deserialize)]
pub struct ClientAuthFields {
    /// Must match the Basic credentials, or the assertion's `sub`, when sent with them.
    client_id: Option<String>,
    /// With `client_secret_post` only.
    client_secret: Option<ClientSecret>,
    /// With `private_key_jwt` only (RFC 7521 §4.2): a JWT signed with the client's key.
    client_assertion: Option<ClientSecret>,
    /// With `client_assertion`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: Option<String>,
}

/// What the client presented to prove who it is.
#[derive(Debug, Clone)]
pub enum Presented {
    Secret(ClientSecret),
    /// A compact JWS, kept as a secret: it is a bearer credential until it expires.
    Assertion(ClientSecret),
}

/// The client credentials of one request, taken from exactly one place.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub presented: Presented,
    pub method: AuthMethod,
}

impl ClientCredentials {
    /// Reads credentials from the `Authorization` header or the body, refusing requests that use
    /// more than one method (RFC 6749 §2.3) or none.
    pub fn from_request(authorization: Option<&str>, body: &ClientAuthFields) -> Result<Self, OAuthError> {
        let body_secret = body.client_secret.as_ref().filter(|s| !s.expose_secret().is_empty());
        let assertion = body.client_assertion.as_ref().filter(|s| !s.expose_secret().is_empty());
        if assertion.is_some() || present(&body.client_assertion_type).is_some() {
            if authorization.is_some() || body_secret.is_some() {
                return Err(OAuthError::invalid_request("the client authenticated with more than one method"));
            }
            return Self::from_assertion(assertion, present(&body.client_assertion_type), present(&body.client_id));
        }
        match authorization {
            Some(header) => {
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request("the client authenticated with more than one method"));
                }
                let credentials = parse_basic(header)?;
                match present(&body.client_id) {
                    Some(id) if id != credentials.client_id => {
                        Err(OAuthError::invalid_request("client_id does not match the Authorization header"))
                    }
                    _ => Ok(credentials),
                }
            }
            None => match (present(&body.client_id), body_secret) {
                (Some(client_id), Some(secret)) => Ok(Self {
                    client_id: client_id.to_owned(),
                    presented: Presented::Secret(secret.clone()),
                    method: AuthMethod::ClientSecretPost,
                }),
                _ => Err(OAuthError::invalid_client("client authentication is required", None)),
            },
        }
    }

    /// RFC 7521 §4.2: both parameters, the JWT bearer type, and a client id from `client_id` or
    /// else the assertion's (unverified) `sub`; the registry checks the rest.
    fn from_assertion(
        assertion: Option<&ClientSecret>,
        assertion_type: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let rejected = |why: &'static str| OAuthError::invalid_client(why, Some(AuthMethod::PrivateKeyJwt));
        let (Some(assertion), Some(assertion_type)) = (assertion, assertion_type) else {
            return Err(OAuthError::invalid_request("client_assertion and client_assertion_type go together"));
        };
        if assertion_type != CLIENT_ASSERTION_TYPE_JWT {
            return Err(rejected("client_assertion_type is not supported"));
        }
        if assertion.expose_secret().len() > MAX_ASSERTION_BYTES {
            return Err(rejected("the client assertion is too large"));
        }
        let subject = unverified_subject(assertion.expose_secret())
            .ok_or_else(|| rejected("the client assertion is not a JWT with a sub claim"))?;
        if client_id.is_some_and(|id| id != subject) {
            return Err(OAuthError::invalid_request("client_id does not match the client assertion's sub"));
        }
        Ok(Self {
            client_id: subject,
            presented: Presented::Assertion(assertion.clone()),
            method: AuthMethod::PrivateKeyJwt,
        })
    }
}

/// The `sub` of a compact JWS, read without checking anything: only to find whose keys verify it.
fn unverified_subject(jws: &str) -> Option<String> {
    let mut parts = jws.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("sub")?.as_str().filter(|sub| !sub.is_empty()).map(str::to_owned)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1, Appendix B).
fn parse_basic(header: &str) -> Result<ClientCredentials, OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed Basic credentials", Some(AuthMethod::ClientSecretBasic));
    let (scheme, encoded) = header.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("only the Basic scheme is accepted", None));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let client_id = form_urldecode(id).ok_or_else(malformed)?;
    let secret = form_urldecode(secret).ok_or_else(malformed)?;
    if client_id.is_empty() || secret.is_empty() {
        return Err(malformed());
    }
    Ok(ClientCredentials {
        client_id,
        presented: Presented::Secret(ClientSecret::new(secret)),
        method: AuthMethod::ClientSecretBasic,
    })
}

fn form_urldecode(text: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_html_form::from_str(&format!("v={text}")).ok()?;
    match pairs.as_slice() {
        [(_, value)] => Some(value.clone()),
        [] => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        let creds = parse_basic(&basic("gate%3Away:s%25e+c%2Bret%3A")).ok();
        let creds = creds.map(|c| match c.presented {
            Presented::Secret(secret) => (c.client_id, secret.expose_secret().to_owned()),
            Presented::Assertion(_) => (c.client_id, String::new()),
        });
        assert_eq!(creds, Some(("gate:way".to_owned(), "s%e c+ret:".to_owned())));
    }

    #[test]
    fn basic_credentials_without_colon_are_rejected() {
        assert!(parse_basic(&basic("nocolon")).is_err());
        assert!(parse_basic("Basic !!!").is_err());
    }
}
