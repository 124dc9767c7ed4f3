//! Signed answers about a token: RFC 9701 introspection responses and OIDC signed userinfo
//! (Core §5.3.2). Not a claim of one is believed before its signature verifies with the
//! upstream's own keys, under the upstream's algorithms, from its issuer, for us. An answer
//! that fails any check says nothing about the token: the upstream is misconfigured or
//! someone tampers with its answers, so it is never taken, and never remembered.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::jwt::numeric_date;
use crate::clock::UnixTime;
use crate::vocabulary::ValidationError;

/// The oldest signed answer we take: it was signed for a request we just sent.
const MAX_ANSWER_AGE: Duration = Duration::from_secs(300);

/// Which answer a JWS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedAnswer {
    /// RFC 9701: `typ` `token-introspection+jwt`, `iat` required, the answer in `token_introspection`.
    Introspection,
    /// OIDC Core §5.3.2: the claims are the userinfo members.
    Userinfo,
}

impl SignedAnswer {
    /// The media type to ask for in `Accept` and to expect back.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Introspection => "application/token-introspection+jwt",
            Self::Userinfo => "application/jwt",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Introspection => "signed introspection answer",
            Self::Userinfo => "signed userinfo answer",
        }
    }
}

/// Verifies an upstream's signed answers.
pub struct AnswerVerifier {
    issuer: String,
    /// Our `client_id` at the upstream: the answer must be meant for us.
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    keys: Arc<JwksCache>,
}

impl AnswerVerifier {
    pub fn new(
        issuer: String,
        audience: String,
        algorithms: Vec<Algorithm>,
        leeway: Duration,
        keys: Arc<JwksCache>,
    ) -> Self {
        Self { issuer, audience, algorithms, leeway, keys }
    }

    /// The claims of `unverified_answer` once every check has passed; for an introspection,
    /// the RFC 7662 members inside its `token_introspection` claim.
    pub async fn verify(
        &self,
        kind: SignedAnswer,
        unverified_answer: &str,
        now: UnixTime,
    ) -> Result<Map<String, Value>, ValidationError> {
        let untrusted = |why: &str| ValidationError::Misconfigured(format!("{}: {why}", kind.name()));
        if unverified_answer.split('.').count() != 3 {
            return Err(untrusted("not a compact JWS (encrypted answers are not supported)"));
        }
        let header = decode_header(unverified_answer).map_err(|_| untrusted("the JOSE header is malformed"))?;
        if header.crit.is_some() {
            return Err(untrusted("the header names critical extensions we do not support"));
        }
        // RFC 8725 §3.11 and RFC 9701 §5: explicit typing keeps any other JWT of the provider
        // (an ID token, a JWT access token) from passing as an introspection answer.
        if kind == SignedAnswer::Introspection && !header.typ.as_deref().is_some_and(is_introspection_typ) {
            return Err(untrusted("typ is not token-introspection+jwt"));
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(untrusted("signed with an algorithm this upstream may not use"));
        }
        let key = self.keys.key_for(header.kid.as_deref(), header.alg, now).await.map_err(|error| match error {
            ValidationError::Rejected(_) => untrusted("its signing key is not in the upstream's JWKS"),
            other => other,
        })?;
        let mut claims = decode::<Map<String, Value>>(unverified_answer, &key.key, &self.validation(header.alg))
            .map_err(|error| untrusted(rejection(error.kind())))?
            .claims;
        self.check_time(kind, &claims, now).map_err(untrusted)?;
        match kind {
            SignedAnswer::Userinfo => Ok(claims),
            SignedAnswer::Introspection => match claims.remove("token_introspection") {
                Some(Value::Object(members)) => Ok(members),
                _ => Err(untrusted("token_introspection is missing or not an object")),
            },
        }
    }

    /// Signature, `iss` and `aud` are left to jsonwebtoken; time is checked against `now`.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation
    }

    /// `iat` no later than now (give or take `leeway`) and not older than [`MAX_ANSWER_AGE`];
    /// RFC 9701 §5 requires it. An `exp`, where there is one, not passed.
    fn check_time(&self, kind: SignedAnswer, claims: &Map<String, Value>, now: UnixTime) -> Result<(), &'static str> {
        match (claims.get("iat"), numeric_date(claims, "iat")) {
            (None, _) if kind == SignedAnswer::Introspection => return Err("iat is missing"),
            (None, _) => {}
            (Some(_), None) => return Err("iat is not a NumericDate"),
            (Some(_), Some(iat)) if iat > now + self.leeway => return Err("iat is in the future"),
            (Some(_), Some(iat)) if iat + MAX_ANSWER_AGE + self.leeway < now => return Err("iat is too old"),
            (Some(_), Some(_)) => {}
        }
        match (claims.get("exp"), numeric_date(claims, "exp")) {
            (None, _) => Ok(()),
            (Some(_), Some(exp)) if now < exp + self.leeway => Ok(()),
            (Some(_), Some(_)) => Err("the answer has expired"),
            (Some(_), None) => Err("exp is not a NumericDate"),
        }
    }
}

/// RFC 7515 §4.1.9: `typ` may leave out `application/`, and media types ignore case.
fn is_introspection_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ.strip_prefix("application/").unwrap_or(&typ) == "token-introspection+jwt"
}

fn rejection(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "the signature does not verify",
        ErrorKind::InvalidAudience => "aud does not name our client_id",
        ErrorKind::InvalidIssuer => "iss is not the upstream's issuer",
        ErrorKind::MissingRequiredClaim(_) => "iss or aud is missing",
        ErrorKind::InvalidAlgorithm => "the algorithm does not fit the key",
        _ => "the JWS is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_introspection_typ_may_be_written_as_a_full_media_type_in_any_case() {
        for typ in ["token-introspection+jwt", "application/token-introspection+jwt", "Token-Introspection+JWT"] {
            assert!(is_introspection_typ(typ), "{typ}");
        }
        for typ in ["JWT", "at+jwt", "application/jwt", "token-introspection"] {
            assert!(!is_introspection_typ(typ), "{typ}");
        }
    }
}
