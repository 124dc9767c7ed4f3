//! The words every layer speaks: a presented token ([`SubjectToken`], only ever hashed), scopes,
//! secrets, audiences and resources, the identity an upstream vouched for and the verdict on a
//! token. A leaf: it imports nothing of ours but the clock.

mod identity;
mod scope;
mod secret;
mod target;
mod token;
mod verdict;

pub use identity::{ValidatedIdentity, retain_claims, scopes_from_claims};
pub use scope::{ScopeSet, ScopeToken};
pub use secret::ClientSecret;
pub use target::{Audience, Resource};
pub use token::{SubjectToken, TokenDigest, hex};
pub use verdict::{ValidationError, Vouched};
