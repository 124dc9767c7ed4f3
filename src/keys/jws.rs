use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::{KeyError, Signer};

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Compact JWS with `typ: at+jwt` (RFC 9068 §2.1) signed by `key`.
pub fn sign_jwt(key: &dyn Signer, claims: &impl Serialize) -> Result<String, KeyError> {
    let header = Header { alg: key.algorithm().as_str(), typ: "at+jwt", kid: key.kid() };
    let header = serde_json::to_vec(&header).map_err(|_| KeyError::Sign)?;
    let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}
