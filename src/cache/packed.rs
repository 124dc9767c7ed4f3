//! The in-process form of a cache entry: its fields laid end to end in one allocation, instead
//! of a struct whose subject, scopes and claims each hold their own. A cached identity is read
//! far more often than it is written, but there are many of them: the bytes per identity are
//! what bound how many tokens one replica can keep (#6), and a read allocates the same strings
//! whether it clones a struct or unpacks this.
//!
//! Layout: version (1 byte), kind (1: 0 rejected, 1 valid, 2 valid with an expiry), then
//! - rejected: the reason, to the end;
//! - valid: [expiry, 8 bytes LE], subject (length, bytes), scope count, each scope (length,
//!   bytes), then the retained claims as JSON to the end (nothing when there are none).
//!
//! Lengths are LEB128. The upstream's name and the issuer stay shared `Arc`s beside the bytes.

use std::io::{self, Write};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::entry::{CacheEntry, Verdict, names_subject};
use crate::clock::UnixTime;
use crate::vocabulary::ValidatedIdentity;

const REJECTED: u8 = 0;
const VALID: u8 = 1;
const VALID_WITH_EXPIRY: u8 = 2;

/// One entry, packed; the upstream it came from is kept by whoever holds this.
#[derive(Debug, Clone)]
pub struct PackedEntry {
    /// `None` for a rejection; an identity's issuer, usually the `Arc` of its upstream's settings.
    issuer: Option<Arc<str>>,
    bytes: Box<[u8]>,
    pub valid_until: UnixTime,
}

impl PackedEntry {
    pub fn pack(entry: &CacheEntry) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.push(entry.version);
        let issuer = match &entry.verdict {
            Verdict::Rejected { reason } => {
                bytes.push(REJECTED);
                bytes.extend_from_slice(reason.as_bytes());
                None
            }
            Verdict::Valid { identity } => {
                // Writing to a Vec cannot fail.
                let _ = pack_identity(identity, &mut bytes);
                Some(Arc::clone(&identity.issuer))
            }
        };
        Self { issuer, bytes: bytes.into_boxed_slice(), valid_until: entry.valid_until }
    }

    /// The entry back, as given by `upstream`; `None` only if the bytes were not made by
    /// [`Self::pack`], which a caller treats as a miss.
    pub fn unpack(&self, upstream: &Arc<str>) -> Option<CacheEntry> {
        let mut reader = Reader(&self.bytes);
        let version = reader.byte()?;
        let verdict = match (reader.byte()?, &self.issuer) {
            (REJECTED, _) => Verdict::Rejected { reason: reader.rest_as_str()?.to_owned() },
            (kind @ (VALID | VALID_WITH_EXPIRY), Some(issuer)) => {
                let expires_at = if kind == VALID_WITH_EXPIRY { Some(reader.time()?) } else { None };
                let subject = reader.text()?.into();
                let scopes = (0..reader.length()?).map(|_| reader.text().map(Box::from)).collect::<Option<_>>()?;
                let claims = reader.claims()?;
                let upstream = Arc::clone(upstream);
                let issuer = Arc::clone(issuer);
                Verdict::Valid { identity: ValidatedIdentity { upstream, issuer, subject, expires_at, scopes, claims } }
            }
            _ => return None,
        };
        Some(CacheEntry { version, verdict, valid_until: self.valid_until })
    }

    /// Whether the packed identity's subject digest is `subject_digest_hex` (and its issuer
    /// `issuer`, when given), for purges: reads the subject alone.
    pub fn is_of_subject(&self, issuer: Option<&str>, subject_digest_hex: &str) -> bool {
        match (&self.issuer, self.subject()) {
            (Some(own_issuer), Some(subject)) => names_subject(own_issuer, subject, issuer, subject_digest_hex),
            _ => false,
        }
    }

    fn subject(&self) -> Option<&str> {
        let mut reader = Reader(&self.bytes);
        let _version = reader.byte()?;
        match reader.byte()? {
            VALID => reader.text(),
            VALID_WITH_EXPIRY => reader.time().and_then(|_| reader.text()),
            _ => None,
        }
    }

    /// The heap this holds of its own (the issuer is shared).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// An identity packed for comparison only: a minted token kept for reuse remembers the
/// identity it was minted from in these bytes rather than in a copy of the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedIdentity {
    upstream: Arc<str>,
    issuer: Arc<str>,
    bytes: Box<[u8]>,
}

impl PackedIdentity {
    pub fn of(identity: &ValidatedIdentity) -> Self {
        let mut bytes = Vec::with_capacity(64);
        // Writing to a Vec cannot fail.
        let _ = pack_identity(identity, &mut bytes);
        let (upstream, issuer) = (Arc::clone(&identity.upstream), Arc::clone(&identity.issuer));
        Self { upstream, issuer, bytes: bytes.into_boxed_slice() }
    }

    /// Whether `identity` is the one packed, to the last claim. Packs it against the bytes
    /// held, stopping at the first difference: a reuse check allocates nothing.
    pub fn is_of(&self, identity: &ValidatedIdentity) -> bool {
        if self.upstream != identity.upstream || self.issuer != identity.issuer {
            return false;
        }
        let mut unmatched = Matching(&self.bytes);
        pack_identity(identity, &mut unmatched).is_ok() && unmatched.0.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// A writer that accepts only what continues its bytes, and keeps what is left of them.
struct Matching<'a>(&'a [u8]);

impl Write for Matching<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let rest = self.0.strip_prefix(bytes).ok_or(io::ErrorKind::InvalidData)?;
        self.0 = rest;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn pack_identity(identity: &ValidatedIdentity, out: &mut impl Write) -> io::Result<()> {
    match identity.expires_at {
        Some(expiry) => {
            out.write_all(&[VALID_WITH_EXPIRY])?;
            out.write_all(&expiry.as_secs().to_le_bytes())?;
        }
        None => out.write_all(&[VALID])?,
    }
    write_text(out, &identity.subject)?;
    write_length(out, identity.scopes.len())?;
    for scope in &identity.scopes {
        write_text(out, scope)?;
    }
    if !identity.claims.is_empty() {
        serde_json::to_writer(&mut *out, &identity.claims)?;
    }
    Ok(())
}

fn write_text(out: &mut impl Write, text: &str) -> io::Result<()> {
    write_length(out, text.len())?;
    out.write_all(text.as_bytes())
}

fn write_length(out: &mut impl Write, mut length: usize) -> io::Result<()> {
    while length >= 0x80 {
        out.write_all(&[(length as u8) | 0x80])?;
        length >>= 7;
    }
    out.write_all(&[length as u8])
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(count)?;
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|taken| taken[0])
    }

    fn time(&mut self) -> Option<UnixTime> {
        let secs = self.take(8)?.try_into().ok().map(i64::from_le_bytes)?;
        Some(UnixTime::from_secs(secs))
    }

    fn length(&mut self) -> Option<usize> {
        let mut length = 0_usize;
        for shift in (0..usize::BITS).step_by(7) {
            let byte = self.byte()?;
            length |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(length);
            }
        }
        None
    }

    fn text(&mut self) -> Option<&'a str> {
        let length = self.length()?;
        std::str::from_utf8(self.take(length)?).ok()
    }

    fn rest_as_str(&mut self) -> Option<&'a str> {
        let rest = self.take(self.0.len())?;
        std::str::from_utf8(rest).ok()
    }

    fn claims(&mut self) -> Option<Map<String, Value>> {
        let rest = self.take(self.0.len())?;
        if rest.is_empty() { Some(Map::new()) } else { serde_json::from_slice(rest).ok() }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::subject_digest;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn identity(subject: &str) -> ValidatedIdentity {
        ValidatedIdentity {
            upstream: "idp".into(),
            issuer: "https://idp.example".into(),
            subject: subject.into(),
            expires_at: Some(NOW + Duration::from_secs(600)),
            scopes: Box::new(["read".into(), "write".into()]),
            claims: Map::new(),
        }
    }

    fn round_trip(entry: &CacheEntry) -> Option<CacheEntry> {
        PackedEntry::pack(entry).unpack(&"idp".into())
    }

    #[test]
    fn an_identity_comes_back_as_it_went_in() {
        let entry = CacheEntry::valid(identity("user-1"), NOW + Duration::from_secs(300));

        assert_eq!(round_trip(&entry), Some(entry));
    }

    #[test]
    fn claims_expiry_and_long_strings_come_back_as_they_went_in() {
        let mut identity = identity(&"é".repeat(300));
        identity.expires_at = None;
        identity.scopes = (0..200).map(|n| format!("scope-{n}").into()).collect();
        identity.claims.insert("amr".into(), serde_json::json!(["pwd", "otp"]));
        identity.claims.insert("email".into(), "someone@example.com".into());
        let entry = CacheEntry::valid(identity, NOW);

        assert_eq!(round_trip(&entry), Some(entry));
    }

    #[test]
    fn a_purge_finds_an_identity_by_its_subject_and_issuer_but_never_a_rejection() {
        let packed = PackedEntry::pack(&CacheEntry::valid(identity("user-1"), NOW));
        let user_1 = subject_digest("user-1");

        assert!(packed.is_of_subject(None, &user_1));
        assert!(packed.is_of_subject(Some("https://idp.example"), &user_1));
        assert!(!packed.is_of_subject(Some("https://elsewhere.example"), &user_1));
        assert!(!packed.is_of_subject(None, &subject_digest("user-2")));
        assert!(!PackedEntry::pack(&CacheEntry::rejected("user-1", NOW)).is_of_subject(None, &user_1));
    }

    #[test]
    fn a_rejection_comes_back_with_its_reason() {
        let entry = CacheEntry::rejected("the token is not active", NOW);

        assert_eq!(round_trip(&entry), Some(entry));
    }

    #[test]
    fn a_packed_identity_is_of_that_identity_and_of_no_other() {
        let mut changed = identity("user-1");
        changed.claims.insert("acr".into(), "2".into());

        let packed = PackedIdentity::of(&identity("user-1"));

        assert!(packed.is_of(&identity("user-1")));
        assert!(!packed.is_of(&identity("user-2")));
        assert!(!packed.is_of(&changed));
        assert!(!packed.is_of(&ValidatedIdentity { issuer: "https://elsewhere.example".into(), ..identity("user-1") }));
    }

    #[test]
    fn an_identity_packs_into_fewer_bytes_than_its_fields_take() {
        let packed = PackedEntry::pack(&CacheEntry::valid(identity("user-12345"), NOW));

        assert!(packed.heap_bytes() < 40, "{} bytes", packed.heap_bytes());
    }

    #[test]
    fn truncated_bytes_read_as_nothing_rather_than_as_a_wrong_identity() {
        let packed = PackedEntry::pack(&CacheEntry::valid(identity("user-1"), NOW));
        for cut in 0..packed.bytes.len() {
            let shorter = PackedEntry { bytes: packed.bytes[..cut].into(), ..packed.clone() };
            let back = shorter.unpack(&"idp".into());
            assert!(back.is_none(), "cut at {cut}: {back:?}");
        }
    }
}
