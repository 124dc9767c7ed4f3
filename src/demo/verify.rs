//! `token-exchange verify-token`: what a downstream service does with a minted token, from the
//! command line. Fetches the JWKS, picks the key the token's `kid` names, and checks the
//! signature, `typ: at+jwt` (RFC 9068), `iss`, `aud` and `exp`.

use std::str::FromStr as _;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use url::Url;

use crate::clock::UnixTime;

/// The algorithms we sign with (`tokens.algorithm`); anything else is refused.
const ACCEPTED: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub kid: String,
    pub algorithm: Algorithm,
    pub expires_in: Duration,
    pub claims: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: Url, reason: String },
    #[error("not a JWS: {0}")]
    Malformed(String),
    #[error("typ is {0:?}, not \"at+jwt\" (RFC 9068)")]
    Typ(Option<String>),
    #[error("alg {0:?} is not one we sign with")]
    Algorithm(Algorithm),
    #[error("the JWKS has no usable key with the token's kid ({0})")]
    UnknownKey(String),
    #[error("{0}")]
    Invalid(String),
    #[error("expired {0} s ago")]
    Expired(i64),
}

/// Verifies `token` against the keys at `jwks_url`, for `issuer` and `audience`, at `now`.
pub async fn verify_token(
    jwks_url: &Url,
    issuer: &str,
    audience: &str,
    token: &str,
    now: UnixTime,
) -> Result<Verified, VerifyError> {
    let header = decode_header(token).map_err(|error| VerifyError::Malformed(error.to_string()))?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(VerifyError::Typ(header.typ));
    }
    if !ACCEPTED.contains(&header.alg) {
        return Err(VerifyError::Algorithm(header.alg));
    }
    let kid = header.kid.clone().ok_or_else(|| VerifyError::UnknownKey("none".into()))?;
    let jwks = fetch(jwks_url).await?;
    let jwk = jwks.find(&kid).ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
    let declared = jwk.common.key_algorithm.map(|alg| Algorithm::from_str(&alg.to_string()));
    if declared.is_some_and(|alg| alg.ok() != Some(header.alg)) {
        return Err(VerifyError::UnknownKey(kid));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| VerifyError::UnknownKey(kid.clone()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Time is checked below against `now`, which comes from our clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|error| VerifyError::Invalid(error.to_string()))?
        .claims;
    let exp =
        claims.get("exp").and_then(Value::as_i64).ok_or_else(|| VerifyError::Invalid("exp is not a number".into()))?;
    if exp <= now.as_secs() {
        return Err(VerifyError::Expired(now.as_secs() - exp));
    }
    Ok(Verified { kid, algorithm: header.alg, expires_in: now.until(UnixTime::from_secs(exp)), claims })
}

async fn fetch(url: &Url) -> Result<JwkSet, VerifyError> {
    let failed = |error: reqwest::Error| VerifyError::Fetch { url: url.clone(), reason: error.to_string() };
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(failed)?;
    let response =
        client.get(url.clone()).send().await.and_then(reqwest::Response::error_for_status).map_err(failed)?;
    response.json().await.map_err(failed)
}
