//! Upstream identity providers and how we ask them about a token. JWTs are checked offline
//! against the issuer's JWKS ([`JwtUpstream`]); opaque tokens go to RFC 7662 introspection or
//! OIDC userinfo ([`OpaqueUpstream`]). Which upstream a token goes to is `identity`'s decision.

mod http;
mod jwks;
mod jwt;
mod opaque;
mod settings;

pub use http::UpstreamHttp;
pub use jwks::{JwksCache, StaticJwks, UpstreamKey};
pub use jwt::{JwtUpstream, unverified_claims};
pub use opaque::OpaqueUpstream;
pub use settings::{UpstreamClientAuth, UpstreamHttpSettings, UpstreamProtection, UpstreamSettings};
