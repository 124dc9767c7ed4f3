//! Upstream identity providers and how we ask them about a token. JWTs are checked offline
//! against the issuer's JWKS ([`JwtUpstream`]); opaque tokens go to RFC 7662 introspection or
//! OIDC userinfo ([`OpaqueUpstream`]), whose answers may be signed (`signed.rs`). Endpoints
//! written as `"discover"`, and an absent `jwks_uri`, come from the provider's metadata
//! (`metadata.rs`). Which upstream a token goes to is `identity`'s decision.

mod check;
mod egress;
mod http;
mod jwks;
mod jwt;
mod metadata;
mod opaque;
mod settings;
mod signed;

pub use check::{Discovered, EndpointOrigin, check_online};
pub use egress::Egress;
pub use http::UpstreamHttp;
pub use jwks::{JwksCache, StaticJwks, UpstreamKey};
pub use jwt::{JwtUpstream, unverified_claims};
pub use metadata::{MetadataCache, is_secure_endpoint};
pub use opaque::OpaqueUpstream;
pub use settings::{
    AnswerFormat, Endpoint, UpstreamClientAuth, UpstreamHttpSettings, UpstreamProtection, UpstreamSettings,
};
