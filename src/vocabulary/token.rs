use std::fmt;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// A token presented by a caller. Its text is reachable only through [`Self::expose_secret`];
/// everything that is logged, stored or used as a key is derived from its [`TokenDigest`].
#[derive(Clone, serde::Deserialize)]
#[serde(from = "String")]
pub struct SubjectToken {
    text: String,
    /// Hashed once, however many places (span, cache keys, reuse key, revocation checks) name
    /// the token by it.
    digest: OnceLock<TokenDigest>,
}

impl From<String> for SubjectToken {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

impl SubjectToken {
    pub fn new(token: String) -> Self {
        Self { text: token, digest: OnceLock::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// For the two places that must send the token on: the upstream call and signature checks.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    pub fn digest(&self) -> TokenDigest {
        *self.digest.get_or_init(|| TokenDigest(Sha256::digest(self.text.as_bytes()).into()))
    }

    /// True when the token has the compact JWS shape `header.payload.signature`; the signature
    /// may be empty, as an unsecured (`alg: none`) JWS has it.
    pub fn looks_like_jws(&self) -> bool {
        let base64url = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let mut parts = self.text.split('.');
        let mut segment =
            |may_be_empty: bool| parts.next().is_some_and(|part| (may_be_empty || !part.is_empty()) && base64url(part));
        segment(false) && segment(false) && segment(true) && parts.next().is_none()
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectToken({})", self.digest().fingerprint())
    }
}

/// SHA-256 of a token: the only form in which a token is kept or named.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short prefix of the digest, enough to correlate log lines, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.fingerprint())
    }
}

/// Lowercase hex, the form digests take in keys, logs and messages.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_token() {
        let token = SubjectToken::new("very-secret-opaque-token".into());
        assert!(!format!("{token:?}").contains("secret"));
        assert_eq!(token.digest().to_hex().len(), 64);
    }

    #[test]
    fn recognises_compact_jws_shape() {
        assert!(SubjectToken::new("a.b.c".into()).looks_like_jws());
        assert!(!SubjectToken::new("a.b".into()).looks_like_jws());
        assert!(!SubjectToken::new("opaque-token".into()).looks_like_jws());
        assert!(!SubjectToken::new("a..c".into()).looks_like_jws());
        assert!(SubjectToken::new("a.b.".into()).looks_like_jws(), "an unsecured JWS is still a JWS");
    }
}
