use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use serde::Deserialize;

use super::OAuthError;
use super::form::present;
use crate::vocabulary::ClientSecret;

/// How a client proved who it is (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// Client credentials sent in the body (`client_secret_post`, RFC 6749 §2.3.1). Part of every
/// form a client authenticates with. The forms' schemas leave these fields out: whether they
/// may be sent depends on the `Authorization` header, which a body schema cannot see, so the
/// operations describe `client_secret_post` in words.
#[derive(Debug, Default, Deserialize)]
pub struct ClientAuthFields {
    /// With `client_secret_post` only; must match the Basic credentials when both are sent.
    client_id: Option<String>,
    /// With `client_secret_post` only.
    client_secret: Option<ClientSecret>,
    /// Assertions (RFC 7521) are not accepted; a request carrying one is refused.
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
}

/// The client credentials of one request, taken from exactly one place.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: ClientSecret,
    pub method: AuthMethod,
}

impl ClientCredentials {
    /// Reads credentials from the `Authorization` header or the body, refusing requests that use
    /// more than one method (RFC 6749 §2.3) or none.
    pub fn from_request(authorization: Option<&str>, body: &ClientAuthFields) -> Result<Self, OAuthError> {
        if present(&body.client_assertion).is_some() || present(&body.client_assertion_type).is_some() {
            return Err(OAuthError::invalid_client("client assertions are not supported", None));
        }
        let body_secret = body.client_secret.as_ref().filter(|s| !s.expose_secret().is_empty());
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
                    secret: secret.clone(),
                    method: AuthMethod::ClientSecretPost,
                }),
                _ => Err(OAuthError::invalid_client("client authentication is required", None)),
            },
        }
    }
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
    Ok(ClientCredentials { client_id, secret: ClientSecret::new(secret), method: AuthMethod::ClientSecretBasic })
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
        let creds = creds.map(|c| (c.client_id, c.secret.expose_secret().to_owned()));
        assert_eq!(creds, Some(("gate:way".to_owned(), "s%e c+ret:".to_owned())));
    }

    #[test]
    fn basic_credentials_without_colon_are_rejected() {
        assert!(parse_basic(&basic("nocolon")).is_err());
        assert!(parse_basic("Basic !!!").is_err());
    }
}
