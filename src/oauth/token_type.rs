/// `grant_type` of RFC 8693 §2.1.
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Token type identifiers of RFC 8693 §3, compared case-sensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    AccessToken,
    RefreshToken,
    IdToken,
    Saml1,
    Saml2,
    Jwt,
}

impl TokenType {
    pub const ALL: [TokenType; 6] =
        [Self::AccessToken, Self::RefreshToken, Self::IdToken, Self::Saml1, Self::Saml2, Self::Jwt];

    pub fn uri(self) -> &'static str {
        match self {
            Self::AccessToken => "urn:ietf:params:oauth:token-type:access_token",
            Self::RefreshToken => "urn:ietf:params:oauth:token-type:refresh_token",
            Self::IdToken => "urn:ietf:params:oauth:token-type:id_token",
            Self::Saml1 => "urn:ietf:params:oauth:token-type:saml1",
            Self::Saml2 => "urn:ietf:params:oauth:token-type:saml2",
            Self::Jwt => "urn:ietf:params:oauth:token-type:jwt",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.uri() == uri)
    }
}
