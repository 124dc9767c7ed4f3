use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::SigningAlgorithm;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not generate a {0:?} key")]
    Generate(SigningAlgorithm),
    #[error("stored {0:?} key could not be parsed")]
    Parse(SigningAlgorithm),
    #[error("signing failed")]
    Sign,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key parsed once, so signing costs only the signature itself.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    pair: Pair,
    public: PublicJwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.algorithm).finish_non_exhaustive()
    }
}

/// A public JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2): never any private member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl SigningKey {
    /// A fresh private key as PKCS#8 DER.
    pub fn generate_pkcs8(algorithm: SigningAlgorithm) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Generate(algorithm);
        let document = match algorithm {
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).and_then(|k| k.to_pkcs8v1()).map_err(failed)?
            }
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8v1()).map_err(failed)?,
            SigningAlgorithm::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
                return Ok(der.as_ref().to_vec());
            }
        };
        Ok(document.as_ref().to_vec())
    }

    /// Parses a stored key; its `kid` is the RFC 7638 thumbprint of the public key.
    pub fn from_pkcs8(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let bad = |_| KeyError::Parse(algorithm);
        let (pair, members) = match algorithm {
            SigningAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?;
                let point = pair.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let (x, y) = point.get(1..33).zip(point.get(33..65)).ok_or(KeyError::Parse(algorithm))?;
                let members = Members::Ec { x: b64(x), y: b64(y) };
                (Pair::Ec(pair), members)
            }
            SigningAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?;
                let x = b64(pair.public_key().as_ref());
                (Pair::Ed(pair), Members::Okp { x })
            }
            SigningAlgorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?;
                if pair.public_modulus_len() < 256 {
                    return Err(KeyError::Parse(algorithm));
                }
                let public = pair.public_key();
                let n = b64(public.modulus().big_endian_without_leading_zero());
                let e = b64(public.exponent().big_endian_without_leading_zero());
                (Pair::Rsa(pair), Members::Rsa { n, e })
            }
        };
        let kid = members.thumbprint();
        let public = members.into_jwk(algorithm, kid.clone());
        Ok(Self { kid, algorithm, pair, public })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// Signs `message`; ECDSA signatures come out as fixed-length R‖S (RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(pair) => pair.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| KeyError::Sign),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).map_err(|_| KeyError::Sign)?;
                Ok(signature)
            }
        }
    }
}

enum Members {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
}

impl Members {
    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    fn into_jwk(self, algorithm: SigningAlgorithm, kid: String) -> PublicJwk {
        let mut jwk = PublicJwk {
            kty: String::new(),
            use_: "sig".into(),
            alg: algorithm.as_str().into(),
            kid,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match self {
            Self::Ec { x, y } => {
                jwk.kty = "EC".into();
                jwk.crv = Some("P-256".into());
                jwk.x = Some(x);
                jwk.y = Some(y);
            }
            Self::Okp { x } => {
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(x);
            }
            Self::Rsa { n, e } => {
                jwk.kty = "RSA".into();
                jwk.n = Some(n);
                jwk.e = Some(e);
            }
        }
        jwk
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_pkcs8_with_a_stable_kid() {
        for alg in [SigningAlgorithm::ES256, SigningAlgorithm::EdDSA, SigningAlgorithm::RS256] {
            let der = SigningKey::generate_pkcs8(alg).unwrap();
            let first = SigningKey::from_pkcs8(alg, &der).unwrap();
            let second = SigningKey::from_pkcs8(alg, &der).unwrap();
            assert_eq!(first.kid(), second.kid());
            assert!(!first.sign(b"message").unwrap().is_empty());
        }
    }

    #[test]
    fn es256_signatures_are_fixed_length_r_s() {
        let der = SigningKey::generate_pkcs8(SigningAlgorithm::ES256).unwrap();
        let key = SigningKey::from_pkcs8(SigningAlgorithm::ES256, &der).unwrap();
        assert_eq!(key.sign(b"m").unwrap().len(), 64);
    }
}
