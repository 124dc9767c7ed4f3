//! The token exchange use case (RFC 8693), free of HTTP: decide what may be issued, have the
//! subject validated, mint the token.

mod claims;
mod policy;
mod reuse;

use std::sync::Arc;
use std::time::Duration;

use crate::clients::RegisteredClient;
use crate::clock::{SharedClock, UnixTime};
use crate::identity::{IdentityService, Presenter};
use crate::keys::{KeyError, KeySource, sign_jwt};
use crate::oauth::{ExchangeRequest, OAuthError, PresentedToken, TokenType};
use crate::vocabulary::{Audience, ScopeSet, TokenDigest, ValidatedIdentity, ValidationError};

/// What minted tokens look like.
#[derive(Debug, Clone)]
pub struct MintSettings {
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Lifetime of minted tokens; never beyond the subject token's own `exp`.
    pub ttl: Duration,
    /// `aud` when the request names neither audience nor resource.
    pub default_audience: Audience,
    /// Hand out a token minted for the same grant again while half its life is left.
    pub reuse_minted: bool,
    /// How many minted tokens, and how many bytes of them, are kept for reuse.
    pub reuse_bounds: crate::cache::MemoryBounds,
}

/// What a client may receive for one request.
struct Grant {
    audience: Vec<Audience>,
    subject: ValidatedIdentity,
    actor: Option<ValidatedIdentity>,
    scope: ScopeSet,
}

/// What the token endpoint hands back.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub issued_token_type: TokenType,
    pub expires_in: Duration,
    pub scope: ScopeSet,
}

/// Why a token could not be signed: our fault, never the client's.
#[derive(Debug, thiserror::Error)]
enum MintError {
    #[error("no signing key is active")]
    NoActiveKey,
    #[error("signing a minted token failed")]
    Sign(#[source] KeyError),
}

pub struct ExchangeService {
    identities: Arc<IdentityService>,
    keys: Arc<dyn KeySource>,
    settings: MintSettings,
    clock: SharedClock,
    reuse: Option<reuse::MintedTokens>,
}

impl ExchangeService {
    pub fn new(
        identities: Arc<IdentityService>,
        keys: Arc<dyn KeySource>,
        settings: MintSettings,
        clock: SharedClock,
    ) -> Self {
        let reuse = settings.reuse_minted.then(|| reuse::MintedTokens::new(settings.reuse_bounds, settings.ttl));
        Self { identities, keys, settings, clock, reuse }
    }

    #[tracing::instrument(name = "exchange", skip_all, fields(client_id = %client.client_id, subject))]
    pub async fn exchange(
        &self,
        client: &RegisteredClient,
        request: ExchangeRequest,
    ) -> Result<IssuedToken, OAuthError> {
        let now = self.clock.now();
        let subject = request.subject.token.digest();
        tracing::Span::current().record("subject", tracing::field::display(subject.fingerprint()));
        let grant = self.authorize(client, &request, now).await?;
        let scope = grant.scope.clone();
        let (access_token, expires_at) = self.token_for(client, subject, grant, now).await?;
        Ok(IssuedToken {
            access_token,
            issued_token_type: request.requested_token_type,
            expires_in: now.until(expires_at),
            scope,
        })
    }

    /// Who the subject (and actor) is and what the client may receive for it: decided on
    /// every request, whatever the caches hold.
    async fn authorize(
        &self,
        client: &RegisteredClient,
        request: &ExchangeRequest,
        now: UnixTime,
    ) -> Result<Grant, OAuthError> {
        // Cheap checks first: a request for a forbidden audience never reaches an upstream.
        let audience = policy::audience(client, request, &self.settings.default_audience)?;
        let subject = self.validate(&request.subject, client, now, "subject_token").await?;
        policy::check_client_upstream(client, &subject)?;
        let actor = match &request.actor {
            Some(actor) => Some(self.validate(actor, client, now, "actor_token").await?),
            None => None,
        };
        if let Some(actor) = &actor {
            policy::check_client_upstream(client, actor)?;
            policy::check_may_act(&subject, actor)?;
        }
        let scope = policy::granted_scope(request.scope.as_ref(), &subject.scope_set(), &client.scopes)?;
        Ok(Grant { audience, subject, actor, scope })
    }

    /// The token minted for the same grant a moment ago, or a new one. `subject` is the
    /// subject token's digest. A token minted for reuse keeps its identity packed.
    async fn token_for(
        &self,
        client: &RegisteredClient,
        subject: TokenDigest,
        grant: Grant,
        now: UnixTime,
    ) -> Result<(String, UnixTime), OAuthError> {
        let reuse = self.reuse.as_ref().filter(|_| grant.actor.is_none());
        let key = reuse.map(|_| reuse::ReuseKey {
            subject,
            client_id: client.client_id.clone(),
            audience: grant.audience.clone(),
            scope: grant.scope.to_wire(),
        });
        if let (Some(reuse), Some(key)) = (reuse, &key)
            && let Some(minted) = reuse.reusable(key, &grant.subject, now).await
        {
            log_issued(&grant.subject);
            return Ok((minted.access_token.to_string(), minted.expires_at));
        }
        let (access_token, expires_at) = self.mint(client, &grant, now)?;
        log_issued(&grant.subject);
        if let (Some(reuse), Some(key)) = (reuse, key) {
            let identity = crate::cache::PackedIdentity::of(&grant.subject);
            let minted =
                reuse::Minted { access_token: access_token.as_str().into(), issued_at: now, expires_at, identity };
            reuse.remember(key, minted).await;
        }
        Ok((access_token, expires_at))
    }

    /// Signs a new token that ends no later than the subject token.
    fn mint(&self, client: &RegisteredClient, grant: &Grant, now: UnixTime) -> Result<(String, UnixTime), OAuthError> {
        // No minted token outlives the subject token, nor the actor's.
        let expiries = [grant.subject.expires_at, grant.actor.as_ref().and_then(|actor| actor.expires_at)];
        let expires_at = expiries.into_iter().flatten().fold(now + self.settings.ttl, UnixTime::min);
        if expires_at <= now {
            return Err(OAuthError::InvalidToken { parameter: "subject_token", reason: "it has expired".into() });
        }
        let claims = claims::MintedClaims {
            issuer: &self.settings.issuer,
            client_id: &client.client_id,
            audience: &grant.audience,
            scope: &grant.scope,
            subject: &grant.subject,
            actor: grant.actor.as_ref(),
            issued_at: now,
            expires_at,
        };
        let key = self.keys.active(now).ok_or_else(|| OAuthError::server_error(MintError::NoActiveKey))?.signer;
        let signing = tracing::info_span!("sign", kid = key.kid(), alg = key.algorithm().as_str()).entered();
        let access_token =
            sign_jwt(&*key, &claims).map_err(|error| OAuthError::server_error(MintError::Sign(error)))?;
        drop(signing);
        Ok((access_token, expires_at))
    }

    async fn validate(
        &self,
        presented: &PresentedToken,
        client: &RegisteredClient,
        now: UnixTime,
        parameter: &'static str,
    ) -> Result<ValidatedIdentity, OAuthError> {
        // The client holds its subject token: that gives it the right to revoke it later.
        let presenter = Presenter { client_id: &client.client_id, holds_token: parameter == "subject_token" };
        let resolved = self.identities.resolve(&presented.token, client.upstream.as_deref(), presenter, now).await;
        resolved.map_err(|error| match error {
            // RFC 8693 §2.2.2: an invalid subject or actor token is `invalid_request`.
            ValidationError::Rejected(reason) => OAuthError::InvalidToken { parameter, reason },
            unavailable @ ValidationError::Unavailable { retry_after, .. } => OAuthError::unavailable_because(
                "the upstream identity provider is unavailable",
                retry_after,
                unavailable,
            ),
            // An operator must act, but this request can only be retried: 503, with the cause in
            // the log line (ERROR, like every 5xx).
            misconfigured @ ValidationError::Misconfigured(_) => OAuthError::unavailable_because(
                "the upstream identity provider cannot be asked (misconfigured)",
                None,
                misconfigured,
            ),
            ValidationError::OverBudget { retry_after } => OAuthError::TooManyUnknownTokens { retry_after },
        })
    }
}

fn log_issued(subject: &ValidatedIdentity) {
    tracing::debug!(sub = %subject.subject, upstream = %subject.upstream, "token issued");
}
