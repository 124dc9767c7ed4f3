//! Private keys at rest: sealed with AES-256-GCM under a key-encryption key (KEK), the key id
//! bound as associated data, so a database dump or backup yields no usable signing key and a
//! sealed key cannot be moved to another row.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Marks a sealed key; a plain PKCS#8 key starts with a DER SEQUENCE (0x30) instead.
const SEALED: &[u8; 4] = b"TXK1";
const KEK_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error("a stored signing key cannot be opened with the configured key-encryption key (wrong or missing KEK)")]
    WrongKek,
    #[error("the key-encryption key in {path} is not 32 bytes of base64url")]
    MalformedKek { path: String },
    #[error("cannot read or create the key-encryption key {path}: {source}")]
    KekFile { path: String, source: std::io::Error },
    #[error("sealing a signing key failed")]
    Seal,
}

/// The key-encryption key in force, and the one before it while a change of KEK rolls out.
pub struct KeyCustody {
    current: RandomizedNonceKey,
    previous: Option<RandomizedNonceKey>,
}

impl std::fmt::Debug for KeyCustody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCustody(..)")
    }
}

impl KeyCustody {
    pub fn new(current: &[u8; KEK_BYTES], previous: Option<&[u8; KEK_BYTES]>) -> Result<Self, CustodyError> {
        let key = |bytes: &[u8]| RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| CustodyError::Seal);
        Ok(Self { current: key(current)?, previous: previous.map(|p| key(p)).transpose()? })
    }

    /// `SEALED ‖ nonce ‖ ciphertext ‖ tag`, bound to `kid`.
    pub fn seal(&self, kid: &str, pkcs8: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let mut sealed = pkcs8.to_vec();
        let nonce = self
            .current
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| CustodyError::Seal)?;
        let mut stored = Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len());
        stored.extend_from_slice(SEALED);
        stored.extend_from_slice(nonce.as_ref());
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// The PKCS#8 key inside `stored`, opened with the current KEK or else the previous one.
    pub fn open(&self, kid: &str, stored: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let body = stored.strip_prefix(SEALED.as_slice()).ok_or(CustodyError::WrongKek)?;
        let (nonce, sealed) = body.split_at_checked(NONCE_LEN).ok_or(CustodyError::WrongKek)?;
        let keys = std::iter::once(&self.current).chain(self.previous.as_ref());
        for key in keys {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CustodyError::WrongKek)?;
            let mut buffer = sealed.to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer) {
                return Ok(plain.to_vec());
            }
        }
        Err(CustodyError::WrongKek)
    }

    /// Whether `stored` is sealed under the current KEK (a `rekey` leaves such rows alone).
    pub fn is_current(&self, kid: &str, stored: &[u8]) -> bool {
        let Some(body) = stored.strip_prefix(SEALED.as_slice()) else { return false };
        let Some((nonce, sealed)) = body.split_at_checked(NONCE_LEN) else { return false };
        let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else { return false };
        let mut buffer = sealed.to_vec();
        self.current.open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer).is_ok()
    }
}

/// Whether a stored key is still plain PKCS#8 (written before keys were sealed).
pub fn is_plain(stored: &[u8]) -> bool {
    !stored.starts_with(SEALED)
}

/// Reads a KEK file: 32 random bytes written as base64url.
pub fn read_kek(path: &Path) -> Result<[u8; KEK_BYTES], CustodyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| CustodyError::KekFile { path: path.display().to_string(), source })?;
    decode_kek(text.trim()).ok_or_else(|| CustodyError::MalformedKek { path: path.display().to_string() })
}

pub fn decode_kek(text: &str) -> Option<[u8; KEK_BYTES]> {
    URL_SAFE_NO_PAD.decode(text.trim()).ok()?.try_into().ok()
}

/// Reads the KEK at `path`, creating it (0600, from the system's random source) when it does
/// not exist. Several processes starting at once agree on one file: it is written aside and
/// linked into place, and whoever loses the race reads the winner's.
pub fn read_or_create_kek(path: &Path) -> Result<([u8; KEK_BYTES], bool), CustodyError> {
    let failed = |source| CustodyError::KekFile { path: path.display().to_string(), source };
    if path.exists() {
        return Ok((read_kek(path)?, false));
    }
    let mut kek = [0u8; KEK_BYTES];
    SystemRandom::new().fill(&mut kek).map_err(|_| CustodyError::Seal)?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder).map_err(failed)?;
    }
    let aside = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&aside).map_err(failed)?;
        file.write_all(URL_SAFE_NO_PAD.encode(kek).as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok((kek, true)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok((read_kek(path)?, false)),
        Err(error) => Err(failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_its_kid() {
        let custody = KeyCustody::new(&[7; 32], None).unwrap_or_else(|_| unreachable!());
        let sealed = custody.seal("kid-1", b"0\x82private").unwrap_or_default();
        assert!(!is_plain(&sealed));
        assert!(!sealed.windows(7).any(|w| w == b"private"), "the key is not readable at rest");
        assert_eq!(custody.open("kid-1", &sealed).ok(), Some(b"0\x82private".to_vec()));
        assert!(custody.open("kid-2", &sealed).is_err(), "bound to its row");
        let other = KeyCustody::new(&[8; 32], None).unwrap_or_else(|_| unreachable!());
        assert!(other.open("kid-1", &sealed).is_err(), "useless without the KEK");
        let rolling = KeyCustody::new(&[8; 32], Some(&[7; 32])).unwrap_or_else(|_| unreachable!());
        assert!(rolling.open("kid-1", &sealed).is_ok(), "the previous KEK still opens it");
        assert!(!rolling.is_current("kid-1", &sealed));
    }
}
