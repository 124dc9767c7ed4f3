//! The seam for where signing happens. The exchange asks a [`KeySource`] for the key that signs
//! now and for the keys to publish; the built-in source is [`super::KeyRing`], whose private
//! keys live sealed in the database. A KMS or HSM source implements the same two traits:
//!
//! - [`Signer::sign`] returns the raw JWS signature (for ES256 the 64-byte `R ‖ S`, RFC 7518
//!   §3.4, not DER; for RS256 PKCS#1 v1.5; for EdDSA the 64-byte Ed25519 signature);
//! - [`Signer::kid`] and [`Signer::public_jwk`] name the key as the JWKS publishes it (the kid
//!   should be the RFC 7638 thumbprint of that JWK);
//! - [`KeySource::published`] lists every key a verifier may meet, including one published
//!   ahead of use and ones still valid for tokens they signed.

use std::sync::Arc;

use super::{JwkSet, KeyError, PublicJwk, SigningAlgorithm, SigningKey};
use crate::clock::UnixTime;

/// One signing key, wherever its private half is.
pub trait Signer: Send + Sync {
    fn kid(&self) -> &str;
    fn algorithm(&self) -> SigningAlgorithm;
    fn public_jwk(&self) -> &PublicJwk;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// The key that signs at a given moment, and since when it does.
#[derive(Clone)]
pub struct ActiveSigner {
    pub signer: Arc<dyn Signer>,
    pub since: UnixTime,
}

/// Where signing keys come from.
pub trait KeySource: Send + Sync {
    /// The key that signs at `now`; `None` when none may.
    fn active(&self, now: UnixTime) -> Option<ActiveSigner>;
    /// The public keys verifiers may meet at `now` (the JWKS).
    fn published(&self, now: UnixTime) -> JwkSet;
}

impl Signer for SigningKey {
    fn kid(&self) -> &str {
        SigningKey::kid(self)
    }

    fn algorithm(&self) -> SigningAlgorithm {
        SigningKey::algorithm(self)
    }

    fn public_jwk(&self) -> &PublicJwk {
        SigningKey::public_jwk(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        SigningKey::sign(self, message)
    }
}
