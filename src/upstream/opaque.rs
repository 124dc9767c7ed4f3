//! Opaque access tokens: RFC 7662 introspection for validity and expiry, OIDC userinfo
//! (Core §5.3) for profile claims or as the only check, in that order. Either may answer in
//! plain JSON or signed (RFC 9701, OIDC Core §5.3.2), at an endpoint configured or discovered.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oauth2::basic::BasicTokenType;
use oauth2::{StandardTokenIntrospectionResponse, TokenIntrospectionResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::http::{HttpFailure, UpstreamCall};
use super::jwks::JwksCache;
use super::jwt::check_client;
use super::metadata::{MetadataCache, MetadataEndpoint};
use super::settings::{AnswerFormat, Endpoint};
use super::signed::{AnswerVerifier, SignedAnswer};
use super::{UpstreamClientAuth, UpstreamHttp, UpstreamSettings};
use crate::clock::UnixTime;
use crate::vocabulary::{ClientSecret, SubjectToken, ValidatedIdentity, ValidationError, Vouched, retain_claims};

/// A provider that will not even read a token this long has judged it.
const TOO_LARGE_FOR_UPSTREAM: &str = "the upstream refuses a token this large";

/// Members of an introspection response beyond RFC 7662's own, kept for claim copying.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct ExtraMembers(Map<String, Value>);

impl oauth2::ExtraTokenFields for ExtraMembers {}

type IntrospectionResponse = StandardTokenIntrospectionResponse<ExtraMembers, BasicTokenType>;

struct Introspection {
    endpoint: Endpoint,
    client_id: String,
    client_secret: ClientSecret,
    auth: UpstreamClientAuth,
    /// Set when the answer must be an RFC 9701 JWT.
    signed_by: Option<Arc<AnswerVerifier>>,
}

struct Userinfo {
    endpoint: Endpoint,
    /// Set when the answer must be a signed JWT.
    signed_by: Option<Arc<AnswerVerifier>>,
}

/// An upstream that validates opaque tokens by asking the provider about each one.
pub struct OpaqueUpstream {
    name: Arc<str>,
    issuer: Arc<str>,
    introspection: Option<Introspection>,
    userinfo: Option<Userinfo>,
    /// The provider's metadata, for endpoints written as `"discover"` and the signing keys.
    metadata: Arc<MetadataCache>,
    userinfo_ttl: Duration,
    token_lifetime: Option<Duration>,
    leeway: Duration,
    audiences: Vec<String>,
    accept_answers_without_audience: bool,
    allowed_clients: Vec<String>,
    retained_claims: Vec<String>,
    http: Arc<UpstreamHttp>,
}

impl OpaqueUpstream {
    /// `None` when the upstream has no endpoint for opaque tokens. `metadata` and `keys` are
    /// the issuer's, shared with the upstream's JWT half when it has one.
    pub fn from_settings(
        settings: &UpstreamSettings,
        retained_claims: &[String],
        metadata: Arc<MetadataCache>,
        keys: Arc<JwksCache>,
        http: Arc<UpstreamHttp>,
    ) -> Option<Self> {
        if !settings.asks_per_token() {
            return None;
        }
        let verifier = (settings.signs_introspection() || settings.signs_userinfo())
            .then(|| Arc::new(answer_verifier(settings, keys)));
        let signed_by = |format: AnswerFormat| verifier.clone().filter(|_| format == AnswerFormat::Jwt);
        let introspection = settings.introspection_endpoint.clone().map(|endpoint| Introspection {
            endpoint,
            client_id: settings.client_id.clone().unwrap_or_default(),
            client_secret: settings.client_secret.clone().unwrap_or_default(),
            auth: settings.client_auth_method,
            signed_by: signed_by(settings.introspection_format),
        });
        let userinfo = settings
            .userinfo_endpoint
            .clone()
            .map(|endpoint| Userinfo { endpoint, signed_by: signed_by(settings.userinfo_format) });
        Some(Self {
            name: settings.name.as_str().into(),
            issuer: settings.issuer.as_str().into(),
            introspection,
            userinfo,
            metadata,
            userinfo_ttl: settings.userinfo_ttl,
            token_lifetime: settings.token_lifetime,
            leeway: settings.leeway,
            audiences: settings.audiences.clone(),
            accept_answers_without_audience: settings.accept_answers_without_audience,
            allowed_clients: settings.allowed_clients.clone(),
            retained_claims: retained_claims.to_vec(),
            http,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub async fn validate(&self, token: &SubjectToken, now: UnixTime) -> Result<Vouched, ValidationError> {
        let mut known = Known::default();
        if let Some(introspection) = &self.introspection {
            known = self.introspect(introspection, token, now).await?;
        }
        if let Some(userinfo) = &self.userinfo {
            let profile = self.userinfo(userinfo, token, now).await?;
            known.merge_userinfo(profile)?;
        }
        let subject = known.subject.ok_or_else(|| ValidationError::rejected("the upstream named no subject"))?;
        check_client(&self.allowed_clients, known.client.as_deref())?;
        // A `sub` is unique only within its issuer: an answer may not speak for another one.
        if known.issuer.as_deref().is_some_and(|iss| iss != &*self.issuer) {
            return Err(ValidationError::rejected("the upstream's answer names another issuer"));
        }
        let unknown_expiry = known.expires_at.is_none();
        Ok(Vouched {
            identity: ValidatedIdentity {
                upstream: Arc::clone(&self.name),
                issuer: self.issuer.clone(),
                subject: subject.into_boxed_str(),
                expires_at: known.expires_at,
                scopes: known.scopes,
                claims: retain_claims(&known.claims, &self.retained_claims),
            },
            // Nothing says when the token dies: trust the answer only for a while.
            trust_for: unknown_expiry.then_some(self.userinfo_ttl),
            lifetime_from_first_sight: if unknown_expiry { self.token_lifetime } else { None },
        })
    }

    async fn introspect(
        &self,
        introspection: &Introspection,
        token: &SubjectToken,
        now: UnixTime,
    ) -> Result<Known, ValidationError> {
        let endpoint = self.endpoint(&introspection.endpoint, MetadataEndpoint::Introspection, now).await?;
        let accept = match introspection.signed_by {
            Some(_) => SignedAnswer::Introspection.media_type(),
            None => "application/json",
        };
        let mut form = vec![("token", token.expose_secret()), ("token_type_hint", "access_token")];
        let mut request = self.http.client().post(endpoint).header("Accept", accept);
        match introspection.auth {
            UpstreamClientAuth::ClientSecretBasic => {
                request = request.header(
                    "Authorization",
                    basic(&introspection.client_id, introspection.client_secret.expose_secret()),
                );
            }
            UpstreamClientAuth::ClientSecretPost => {
                form.push(("client_id", &introspection.client_id));
                form.push(("client_secret", introspection.client_secret.expose_secret()));
            }
        }
        let call = UpstreamCall { upstream: &self.name, kind: "introspection" };
        let request = request.form(&form);
        let raw: Value = match &introspection.signed_by {
            None => self.http.send_json(call, request).await.map_err(introspection_failure)?,
            Some(verifier) => {
                let answer = SignedAnswer::Introspection;
                let jws = self.http.send_signed(call, request, answer.media_type()).await;
                Value::Object(verifier.verify(answer, &jws.map_err(introspection_failure)?, now).await?)
            }
        };
        let not_an_access_token = refresh_or_offline_kind(&raw);
        // RFC 7662 §2.2: only the JSON boolean `true` means active; anything else is not.
        let response: IntrospectionResponse = serde_json::from_value(raw)
            .map_err(|_| ValidationError::rejected("the introspection response is not RFC 7662"))?;
        if !response.active() {
            return Err(ValidationError::rejected("the token is not active"));
        }
        if let Some(kind) = not_an_access_token {
            return Err(ValidationError::rejected(format!(
                "a refresh or offline token is not an access token ({kind})"
            )));
        }
        self.check_audience(response.aud())?;
        let expires_at = response.exp().map(|t| UnixTime::from_secs(t.timestamp()));
        if expires_at.is_some_and(|exp| exp <= now) {
            return Err(ValidationError::rejected("the token has expired"));
        }
        if response.nbf().is_some_and(|nbf| UnixTime::from_secs(nbf.timestamp()) > now + self.leeway) {
            return Err(ValidationError::rejected("the token is not yet valid"));
        }
        Ok(Known {
            subject: response.sub().map(str::to_owned),
            issuer: response.iss().map(str::to_owned),
            expires_at,
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|scope| Box::from(scope.as_str())).collect())
                .unwrap_or_default(),
            client: response.client_id().map(|id| id.as_str().to_owned()),
            claims: response.extra_fields().0.clone(),
        })
    }

    /// Like a JWT subject, an introspected token must be meant for us when audiences are set;
    /// one whose answer names no audience only where the upstream says such answers are fine.
    fn check_audience(&self, aud: Option<&Vec<String>>) -> Result<(), ValidationError> {
        if self.audiences.is_empty() {
            return Ok(());
        }
        match aud.filter(|aud| !aud.is_empty()) {
            Some(aud) if aud.iter().any(|a| self.audiences.contains(a)) => Ok(()),
            Some(_) => Err(ValidationError::rejected("the token's audience is not accepted")),
            None if self.accept_answers_without_audience => Ok(()),
            None => Err(ValidationError::rejected(
                "the introspection answer names no aud, and the upstream does not accept answers without audience",
            )),
        }
    }

    async fn userinfo(
        &self,
        userinfo: &Userinfo,
        token: &SubjectToken,
        now: UnixTime,
    ) -> Result<Map<String, Value>, ValidationError> {
        let endpoint = self.endpoint(&userinfo.endpoint, MetadataEndpoint::Userinfo, now).await?;
        let accept = match userinfo.signed_by {
            Some(_) => SignedAnswer::Userinfo.media_type(),
            None => "application/json",
        };
        let request = self.http.client().get(endpoint).bearer_auth(token.expose_secret()).header("Accept", accept);
        let call = UpstreamCall { upstream: &self.name, kind: "userinfo" };
        match &userinfo.signed_by {
            None => self.http.send_json(call, request).await.map_err(userinfo_failure),
            Some(verifier) => {
                let answer = SignedAnswer::Userinfo;
                let jws = self.http.send_signed(call, request, answer.media_type()).await;
                verifier.verify(answer, &jws.map_err(userinfo_failure)?, now).await
            }
        }
    }

    /// Where to call: the configured URL, or the one the provider's metadata names.
    async fn endpoint(
        &self,
        endpoint: &Endpoint,
        which: MetadataEndpoint,
        now: UnixTime,
    ) -> Result<Url, ValidationError> {
        match endpoint {
            Endpoint::At(url) => Ok(url.clone()),
            Endpoint::Discover => self.metadata.get(now).await?.endpoint(which),
        }
    }
}

/// Verifies signed answers with the upstream's keys (its `jwks_uri`, else the metadata's): they
/// must come from its issuer and be meant for our `client_id` there.
fn answer_verifier(settings: &UpstreamSettings, keys: Arc<JwksCache>) -> AnswerVerifier {
    AnswerVerifier::new(
        settings.issuer.clone(),
        settings.client_id.clone().unwrap_or_default(),
        settings.algorithms.clone(),
        settings.leeway,
        keys,
    )
}

fn introspection_failure(failure: HttpFailure) -> ValidationError {
    match failure {
        HttpFailure::Status(401 | 403) => {
            ValidationError::Misconfigured("introspection refused our client credentials".into())
        }
        HttpFailure::Status(413 | 414 | 431) => ValidationError::rejected(TOO_LARGE_FOR_UPSTREAM),
        // RFC 7662 §2.3 answers 200 for bad tokens, yet some providers answer 400 about one.
        HttpFailure::Status(400) => ValidationError::rejected("introspection refused the token"),
        other => other.into_verdict("introspection"),
    }
}

fn userinfo_failure(failure: HttpFailure) -> ValidationError {
    match failure {
        // OIDC Core §5.3.3 with RFC 6750 §3.1: 401 (invalid_token), 403 (insufficient_scope)
        // and 400 (invalid_request) all say the token cannot be used: a verdict on the token.
        HttpFailure::Status(400 | 401 | 403) => ValidationError::rejected("userinfo refused the token"),
        HttpFailure::Status(413 | 414 | 431) => ValidationError::rejected(TOO_LARGE_FOR_UPSTREAM),
        other => other.into_verdict("userinfo"),
    }
}

/// What the upstream has told us so far.
#[derive(Default)]
struct Known {
    subject: Option<String>,
    issuer: Option<String>,
    expires_at: Option<UnixTime>,
    scopes: Box<[Box<str>]>,
    /// The OAuth client the token was issued to, where the answer says.
    client: Option<String>,
    claims: Map<String, Value>,
}

impl Known {
    /// OIDC Core §5.3.2: `sub` is always present, and must match what we already know.
    fn merge_userinfo(&mut self, profile: Map<String, Value>) -> Result<(), ValidationError> {
        let sub = profile
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ValidationError::rejected("the userinfo response has no sub"))?;
        match &self.subject {
            Some(known) if known != sub => return Err(ValidationError::rejected("userinfo names another subject")),
            Some(_) => {}
            None => self.subject = Some(sub.to_owned()),
        }
        // Delegation claims count only when signed or introspected, never from a profile.
        self.claims.extend(profile.into_iter().filter(|(name, _)| !matches!(name.as_str(), "act" | "may_act")));
        Ok(())
    }
}

/// What kind of token an introspection answer says it is, where the provider says: RFC 7662's
/// `token_type`, Keycloak's `typ` (`Refresh`, `Offline`), Cognito's `token_use`, or a hint.
/// A refresh or offline token is never accepted as a subject, whichever member says so.
fn refresh_or_offline_kind(raw: &Value) -> Option<String> {
    ["token_type", "typ", "token_use", "token_type_hint"].iter().find_map(|member| {
        let kind = raw.get(*member).and_then(Value::as_str)?.to_ascii_lowercase();
        matches!(kind.as_str(), "refresh" | "refresh_token" | "offline" | "offline_token" | "offline_access")
            .then(|| format!("{member}: {kind}"))
    })
}

/// RFC 6749 §2.3.1: both parts form-urlencoded before base64.
fn basic(client_id: &str, secret: &str) -> String {
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}
