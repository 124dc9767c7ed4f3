//! Which one upstream is responsible for a token. A JWS whose `iss` names a JWT upstream is
//! verified offline by it, unless it names no audience and that upstream also introspects (or
//! asks userinfo): then the provider judges it. Anything else is opaque and goes to the
//! caller's bound upstream or the default one, never to several in turn.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::UnixTime;
use crate::upstream::{JwtUpstream, OpaqueUpstream, unverified_claims};
use crate::vocabulary::{SubjectToken, ValidationError, Vouched};

/// The one upstream responsible for a token.
#[derive(Clone)]
pub enum Route {
    Jwt(Arc<JwtUpstream>),
    Opaque(Arc<OpaqueUpstream>),
}

impl Route {
    pub fn upstream_name(&self) -> &Arc<str> {
        match self {
            Self::Jwt(upstream) => upstream.name(),
            Self::Opaque(upstream) => upstream.name(),
        }
    }

    /// Whether judging a token costs a call to the provider (a JWT is verified offline).
    pub fn asks_provider(&self) -> bool {
        matches!(self, Self::Opaque(_))
    }

    pub async fn validate(&self, token: &SubjectToken, now: UnixTime) -> Result<Vouched, ValidationError> {
        match self {
            Self::Jwt(upstream) => upstream.validate(token, now).await,
            Self::Opaque(upstream) => upstream.validate(token, now).await,
        }
    }
}

/// Every configured upstream, indexed the ways a subject token can lead to one.
pub struct Routes {
    by_issuer: HashMap<String, Arc<JwtUpstream>>,
    /// JWTs of an upstream that only introspects (or asks userinfo) go to that upstream.
    opaque_by_issuer: HashMap<String, Arc<OpaqueUpstream>>,
    opaque_by_name: HashMap<String, Arc<OpaqueUpstream>>,
    default_opaque: Option<Arc<OpaqueUpstream>>,
    names: Vec<Arc<str>>,
}

impl Routes {
    /// `opaque` pairs each opaque upstream with whether it is the default for unbound clients.
    pub fn new(jwt: Vec<Arc<JwtUpstream>>, opaque: Vec<(Arc<OpaqueUpstream>, bool)>) -> Self {
        let mut names: Vec<Arc<str>> =
            jwt.iter().map(|u| u.name().clone()).chain(opaque.iter().map(|(u, _)| u.name().clone())).collect();
        names.sort();
        names.dedup();
        Self {
            opaque_by_issuer: opaque.iter().map(|(u, _)| (u.issuer().to_owned(), u.clone())).collect(),
            by_issuer: jwt.into_iter().map(|u| (u.issuer().to_owned(), u)).collect(),
            default_opaque: opaque.iter().find(|(_, default)| *default).map(|(u, _)| u.clone()),
            opaque_by_name: opaque.into_iter().map(|(u, _)| (u.name().to_string(), u)).collect(),
            names,
        }
    }

    /// Every upstream name, for dropping a token's cache entries whatever route it took.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    pub fn route(&self, token: &SubjectToken, bound_upstream: Option<&str>) -> Result<Route, ValidationError> {
        // A JWT is never handed to an opaque upstream: that would show one provider's tokens
        // to another. Only the upstream its `iss` names may judge it.
        if let Some(claims) = unverified_claims(token) {
            let issuer = claims.iss.as_deref().unwrap_or_default();
            return match (self.by_issuer.get(issuer), self.opaque_by_issuer.get(issuer)) {
                // A JWS without `aud` cannot show offline that it is meant for us; an upstream
                // that also introspects asks its provider, who knows whom it was issued for.
                (Some(_), Some(opaque)) if !claims.names_an_audience() => Ok(Route::Opaque(opaque.clone())),
                (Some(jwt), _) => Ok(Route::Jwt(jwt.clone())),
                (None, Some(opaque)) => Ok(Route::Opaque(opaque.clone())),
                (None, None) => Err(ValidationError::rejected("no configured upstream trusts the token's issuer")),
            };
        }
        let opaque = match bound_upstream {
            Some(name) => self.opaque_by_name.get(name),
            None => self.default_opaque.as_ref(),
        };
        opaque
            .cloned()
            .map(Route::Opaque)
            .ok_or_else(|| ValidationError::rejected("no upstream accepts opaque tokens for this client"))
    }
}
