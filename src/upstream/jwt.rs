use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::UpstreamSettings;
use super::jwks::JwksCache;
use crate::clock::UnixTime;
use crate::vocabulary::{SubjectToken, ValidatedIdentity, ValidationError, Vouched, retain_claims, scopes_from_claims};

/// An upstream whose tokens are JWTs we verify ourselves.
pub struct JwtUpstream {
    name: Arc<str>,
    issuer: Arc<str>,
    audiences: Vec<String>,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    leeway: Duration,
    retained_claims: Vec<String>,
    allowed_clients: Vec<String>,
    jwks: Arc<JwksCache>,
}

/// What a JWS says of itself before anything is verified: only ever used to pick whose keys
/// to verify it with, or to keep a revocation at least as long as the token could live.
#[derive(Debug, Default)]
pub struct UnverifiedClaims {
    pub iss: Option<String>,
    exp: Option<Value>,
    names_an_audience: bool,
}

impl UnverifiedClaims {
    /// Whether `aud` holds anything: a JWS without one (Keycloak's lightweight access tokens)
    /// cannot show it is meant for us offline.
    pub fn names_an_audience(&self) -> bool {
        self.names_an_audience
    }

    pub fn expires_at(&self) -> Option<UnixTime> {
        match self.exp.as_ref()? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(UnixTime::from_secs),
            _ => None,
        }
    }
}

/// The claims of a token that is a JWS: its first segment is a JOSE header (a JSON object with
/// `alg`, whatever its value, `none` included). Claims that are missing or malformed come back
/// empty: such a token is still a JWS, and still belongs to no one but its issuer.
pub fn unverified_claims(token: &SubjectToken) -> Option<UnverifiedClaims> {
    if !token.looks_like_jws() {
        return None;
    }
    let mut segments = token.expose_secret().split('.');
    let json_object = |segment: Option<&str>| -> Option<Map<String, Value>> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment?).ok()?).ok()
    };
    let header = json_object(segments.next())?;
    if !header.contains_key("alg") {
        return None;
    }
    let mut claims = json_object(segments.next()).unwrap_or_default();
    Some(UnverifiedClaims {
        iss: claims.remove("iss").and_then(|iss| iss.as_str().map(str::to_owned)),
        exp: claims.remove("exp"),
        names_an_audience: match claims.get("aud") {
            Some(Value::String(aud)) => !aud.is_empty(),
            Some(Value::Array(auds)) => !auds.is_empty(),
            _ => false,
        },
    })
}

impl JwtUpstream {
    /// `jwks` is the issuer's, shared with the upstream's opaque half when it has one.
    pub fn new(settings: &UpstreamSettings, retained_claims: &[String], jwks: Arc<JwksCache>) -> Self {
        Self {
            name: settings.name.as_str().into(),
            issuer: settings.issuer.as_str().into(),
            audiences: settings.audiences.clone(),
            algorithms: settings.algorithms.clone(),
            leeway: settings.leeway,
            retained_claims: retained_claims.to_vec(),
            allowed_clients: settings.allowed_clients.clone(),
            jwks,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub async fn validate(&self, token: &SubjectToken, now: UnixTime) -> Result<Vouched, ValidationError> {
        let unverified_header = decode_header(token.expose_secret())
            .map_err(|_| ValidationError::rejected("the token's JOSE header is malformed"))?;
        // RFC 7515 §4.1.11: we understand no extension, so any critical one is refused.
        if unverified_header.crit.is_some() {
            return Err(ValidationError::rejected("the token's header names critical extensions we do not support"));
        }
        let alg = unverified_header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(ValidationError::rejected("the token's signature algorithm is not accepted"));
        }
        let key = self.jwks.key_for(unverified_header.kid.as_deref(), alg, now).await?;
        let claims = decode::<Map<String, Value>>(token.expose_secret(), &key.key, &self.validation(alg))
            .map_err(|e| ValidationError::rejected(rejection(e.kind())))?
            .claims;
        self.check_time(&claims, now)?;
        check_client(&self.allowed_clients, issued_to(&claims))?;
        let identity = self.identity(claims)?;
        Ok(Vouched { identity, trust_for: None, lifetime_from_first_sight: None })
    }

    /// Signature, `iss` and `aud` are left to jsonwebtoken; time is checked by us against `now`.
    fn validation(&self, alg: jsonwebtoken::Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation
    }

    fn check_time(&self, claims: &Map<String, Value>, now: UnixTime) -> Result<(), ValidationError> {
        let exp = numeric_date(claims, "exp").ok_or_else(|| ValidationError::rejected("exp is not a NumericDate"))?;
        if exp + self.leeway <= now {
            return Err(ValidationError::rejected("the token has expired"));
        }
        if claims.contains_key("nbf") {
            let nbf =
                numeric_date(claims, "nbf").ok_or_else(|| ValidationError::rejected("nbf is not a NumericDate"))?;
            if nbf > now + self.leeway {
                return Err(ValidationError::rejected("the token is not yet valid"));
            }
        }
        Ok(())
    }

    fn identity(&self, claims: Map<String, Value>) -> Result<ValidatedIdentity, ValidationError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ValidationError::rejected("sub is missing"))?;
        Ok(ValidatedIdentity {
            upstream: Arc::clone(&self.name),
            issuer: self.issuer.clone(),
            subject: subject.into(),
            expires_at: numeric_date(&claims, "exp"),
            scopes: scopes_from_claims(&claims),
            claims: retain_claims(&claims, &self.retained_claims),
        })
    }
}

/// The reason a verification failed, naming the claim where one is missing: with Keycloak the
/// usual causes are a missing audience mapper (`aud`) or a client without the `basic` scope (`sub`).
fn rejection(kind: &ErrorKind) -> std::borrow::Cow<'static, str> {
    match kind {
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::InvalidIssuer => "the token's issuer does not match".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim").into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key".into(),
        _ => "the token is malformed".into(),
    }
}

/// The client a token was issued to: RFC 9068's `client_id`, else OIDC's `azp`.
pub(super) fn issued_to(claims: &Map<String, Value>) -> Option<&str> {
    ["client_id", "azp"].iter().find_map(|name| claims.get(*name).and_then(Value::as_str))
}

/// An upstream that names `allowed` accepts only tokens issued to one of them.
pub(super) fn check_client(allowed: &[String], client: Option<&str>) -> Result<(), ValidationError> {
    if allowed.is_empty() {
        return Ok(());
    }
    match client {
        Some(client) if allowed.iter().any(|a| a == client) => Ok(()),
        Some(_) => Err(ValidationError::rejected("the token was issued to a client this upstream does not accept")),
        None => {
            Err(ValidationError::rejected("the token names no client (client_id or azp) and the upstream requires one"))
        }
    }
}

pub(super) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<UnixTime> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(UnixTime::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str, claims: &str) -> SubjectToken {
        SubjectToken::new(format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims)))
    }

    #[test]
    fn a_jws_with_malformed_claims_is_still_a_jws_of_no_issuer() {
        let claims = unverified_claims(&jws(r#"{"alg":"RS256"}"#, r#"{"iss":5,"exp":"soon"}"#));
        let claims = claims.unwrap_or_default();
        assert_eq!((claims.expires_at(), claims.iss), (None, None));
        assert!(unverified_claims(&jws(r#"{"alg":"RS256"}"#, "not json")).is_some());
    }

    #[test]
    fn three_dotted_segments_without_a_jose_header_are_no_jws() {
        assert!(unverified_claims(&jws(r#"{"typ":"x"}"#, r#"{"iss":"a"}"#)).is_none());
        assert!(unverified_claims(&SubjectToken::new("abc.def.ghi".into())).is_none());
    }
}
