use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::vocabulary::{TokenDigest, ValidatedIdentity, ValidationError, hex};

/// Which entry a token has: the SHA-256 of the token under the upstream that judged it.
/// The same token routed to two upstreams has two independent verdicts. The upstream's name
/// is the route's `Arc`, shared by every key of that upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    upstream: Arc<str>,
    digest: TokenDigest,
}

/// The digest alone: it is uniform already, and the few upstreams sharing one token's digest
/// are told apart by `Eq`.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl CacheKey {
    pub fn new(upstream: impl Into<Arc<str>>, digest: TokenDigest) -> Self {
        Self { upstream: upstream.into(), digest }
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn upstream_arc(&self) -> &Arc<str> {
        &self.upstream
    }

    pub fn digest(&self) -> &TokenDigest {
        &self.digest
    }

    /// `upstream:hex-digest`, the form used in Redis keys and invalidation messages.
    pub fn to_wire(&self) -> String {
        format!("{}:{}", self.upstream, self.digest.to_hex())
    }
}

/// Version of the stored form; entries of another version are ignored, never misread.
pub const ENTRY_VERSION: u8 = 1;

/// A cached verdict on one token, usable until `valid_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub version: u8,
    pub verdict: Verdict,
    pub valid_until: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Valid { identity: ValidatedIdentity },
    Rejected { reason: String },
}

impl CacheEntry {
    pub fn valid(identity: ValidatedIdentity, valid_until: UnixTime) -> Self {
        Self { version: ENTRY_VERSION, verdict: Verdict::Valid { identity }, valid_until }
    }

    pub fn rejected(reason: impl Into<String>, valid_until: UnixTime) -> Self {
        Self { version: ENTRY_VERSION, verdict: Verdict::Rejected { reason: reason.into() }, valid_until }
    }

    /// Checked on every read: an entry is never used past its own deadline, nor past the
    /// expiry of the identity inside it.
    pub fn is_usable_at(&self, now: UnixTime) -> bool {
        let identity_alive = match &self.verdict {
            Verdict::Valid { identity } => !identity.is_expired_at(now),
            Verdict::Rejected { .. } => true,
        };
        self.version == ENTRY_VERSION && now < self.valid_until && identity_alive
    }

    /// How long the entry may still be kept; zero once it is past its deadline.
    pub fn time_left(&self, now: UnixTime) -> Duration {
        now.until(self.valid_until)
    }

    pub fn identity(&self) -> Option<&ValidatedIdentity> {
        match &self.verdict {
            Verdict::Valid { identity } => Some(identity),
            Verdict::Rejected { .. } => None,
        }
    }

    pub fn into_result(self) -> Result<ValidatedIdentity, ValidationError> {
        match self.verdict {
            Verdict::Valid { identity } => Ok(identity),
            Verdict::Rejected { reason } => Err(ValidationError::rejected(reason)),
        }
    }

    pub fn to_result(&self) -> Result<ValidatedIdentity, ValidationError> {
        match &self.verdict {
            Verdict::Valid { identity } => Ok(identity.clone()),
            Verdict::Rejected { reason } => Err(ValidationError::rejected(reason.clone())),
        }
    }
}

/// What one replica tells the others to drop from their in-process caches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Invalidation {
    /// A token is revoked until `until`: refuse it, drop what is cached of it.
    Revoke {
        digest: String,
        until: UnixTime,
    },
    PurgeSubject {
        issuer: Option<String>,
        subject_digest: String,
    },
}

/// Subjects are personal data: indexes and messages carry their digest only.
pub fn subject_digest(subject: &str) -> String {
    hex(&Sha256::digest(subject.as_bytes()))
}

pub fn is_entry_of_subject(entry: &CacheEntry, issuer: Option<&str>, subject_digest_hex: &str) -> bool {
    entry
        .identity()
        .is_some_and(|identity| names_subject(&identity.issuer, &identity.subject, issuer, subject_digest_hex))
}

/// Whether an identity of `issuer` and `subject` is the one a purge names: by its subject's
/// digest, and by its issuer when the purge gives one.
pub fn names_subject(issuer: &str, subject: &str, wanted_issuer: Option<&str>, subject_digest_hex: &str) -> bool {
    wanted_issuer.is_none_or(|wanted| wanted == issuer) && subject_digest(subject) == subject_digest_hex
}
