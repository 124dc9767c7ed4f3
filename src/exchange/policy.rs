//! What a client may obtain. Evaluated on every request, also when the identity came from a
//! cache: the cache remembers who the subject is, never what a client may do.

use serde_json::Value;

use crate::clients::RegisteredClient;
use crate::oauth::{ExchangeRequest, OAuthError};
use crate::vocabulary::{Audience, ScopeSet, ValidatedIdentity};

/// The `aud` of the minted token: the requested audiences and resources, each of which the
/// client must be registered for, or the default audience when none was requested.
pub fn audience(
    client: &RegisteredClient,
    request: &ExchangeRequest,
    default: &Audience,
) -> Result<Vec<Audience>, OAuthError> {
    let resources = request.resources.iter().cloned().map(Audience::from);
    let requested: Vec<Audience> = request.audiences.iter().cloned().chain(resources).collect();
    if requested.is_empty() {
        return Ok(vec![default.clone()]);
    }
    if requested.iter().any(|aud| !client.may_address(aud)) {
        return Err(OAuthError::InvalidTarget("an audience or resource is not allowed for this client".into()));
    }
    let mut unique = Vec::with_capacity(requested.len());
    for aud in requested {
        if !unique.contains(&aud) {
            unique.push(aud);
        }
    }
    Ok(unique)
}

/// Scope only narrows: what is issued is within the subject's scopes and the client's.
pub fn granted_scope(
    requested: Option<&ScopeSet>,
    subject: &ScopeSet,
    client: &ScopeSet,
) -> Result<ScopeSet, OAuthError> {
    let allowed = subject.intersection(client);
    match requested {
        None => Ok(allowed),
        Some(requested) if requested.iter().all(|s| allowed.contains(s)) => Ok(requested.clone()),
        Some(_) => Err(OAuthError::InvalidScope(
            "the requested scope exceeds what the subject token and the client allow".into(),
        )),
    }
}

/// A client bound to one upstream exchanges only that upstream's tokens.
pub fn check_client_upstream(client: &RegisteredClient, subject: &ValidatedIdentity) -> Result<(), OAuthError> {
    match &client.upstream {
        Some(bound) if **bound != *subject.upstream => Err(OAuthError::UnauthorizedClient(
            "this client may not exchange tokens from the subject token's issuer".into(),
        )),
        _ => Ok(()),
    }
}

/// RFC 8693 §4.4: when the subject names who may act for it, the actor must be that party.
pub fn check_may_act(subject: &ValidatedIdentity, actor: &ValidatedIdentity) -> Result<(), OAuthError> {
    let Some(may_act) = subject.claims.get("may_act") else {
        return Ok(());
    };
    let matches = |claim: &str, value: &str| may_act.get(claim).and_then(Value::as_str).is_none_or(|v| v == value);
    let names_someone = may_act.get("sub").is_some();
    if names_someone && matches("sub", &actor.subject) && matches("iss", &actor.issuer) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request("the actor is not allowed to act for the subject (may_act)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(text: &str) -> ScopeSet {
        ScopeSet::parse(text).unwrap_or_default()
    }

    #[test]
    fn without_requested_scope_the_intersection_is_issued() {
        let granted = granted_scope(None, &scopes("read write admin"), &scopes("read write")).ok();
        assert_eq!(granted.map(|s| s.to_wire()), Some("read write".to_owned()));
    }

    #[test]
    fn requested_scope_beyond_subject_or_client_is_refused() {
        assert!(granted_scope(Some(&scopes("admin")), &scopes("read admin"), &scopes("read")).is_err());
        assert!(granted_scope(Some(&scopes("write")), &scopes("read"), &scopes("read write")).is_err());
        assert!(granted_scope(Some(&scopes("read")), &scopes("read"), &scopes("read write")).is_ok());
    }
}
