//! Our own signing keys: generation, the active signer, the published JWKS and where keys are
//! kept ([`KeyStore`]).

mod algorithm;
mod custody;
mod jws;
mod ring;
mod sealed;
mod signer;
mod signing_key;
mod store;

use std::time::Duration;

pub use algorithm::SigningAlgorithm;
pub use custody::{CustodyError, KeyCustody, decode_kek, read_kek, read_or_create_kek};
pub use jws::sign_jwt;
pub use ring::{JwkSet, KeyRing, KeyRingError, RotationPolicy};
pub use sealed::SealedKeyStore;
pub use signer::{ActiveSigner, KeySource, Signer};
pub use signing_key::{KeyError, PublicJwk, SigningKey};
pub use store::{KeyStore, StoreError, StoredKey};

/// How long verifiers may cache our JWKS (`Cache-Control: max-age` on the JWKS).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
