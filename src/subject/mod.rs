//! What a subject token is to us: a secret we only ever hash ([`SubjectToken`]) and, once an
//! upstream has vouched for it, a [`ValidatedIdentity`].

mod identity;
mod token;

pub use identity::{ALWAYS_RETAINED_CLAIMS, ValidatedIdentity, retain_claims, scopes_from_claims};
pub use token::{SubjectToken, TokenDigest, hex};
