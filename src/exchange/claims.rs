use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use crate::clock::UnixTime;
use crate::vocabulary::{Audience, ScopeSet, ValidatedIdentity};

/// Claims we write ourselves: an upstream claim of the same name never reaches the token.
/// `act` is rebuilt from the actor (RFC 8693 §4.1), `may_act` is meant for us alone.
const OURS: &[&str] = &["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "act", "may_act"];

/// Claims of a minted access token (RFC 9068 §2.2, RFC 8693 §4).
pub struct MintedClaims<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub audience: &'a [Audience],
    pub scope: &'a ScopeSet,
    pub subject: &'a ValidatedIdentity,
    pub actor: Option<&'a ValidatedIdentity>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Written straight into the token's payload: the identity's claims are not copied into a map
/// first, which a cold exchange would pay for on every request.
impl Serialize for MintedClaims<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let scope = (!self.scope.is_empty()).then(|| self.scope.to_wire());
        let mut claims = serializer.serialize_map(None)?;
        for (name, value) in &self.subject.claims {
            let replaced = OURS.contains(&name.as_str()) || (name == "scope" && scope.is_some());
            if !replaced {
                claims.serialize_entry(name, value)?;
            }
        }
        claims.serialize_entry("iss", self.issuer)?;
        claims.serialize_entry("sub", &self.subject.subject)?;
        match self.audience {
            [single] => claims.serialize_entry("aud", single.as_str())?,
            many => claims.serialize_entry("aud", &many.iter().map(Audience::as_str).collect::<Vec<_>>())?,
        }
        claims.serialize_entry("exp", &self.expires_at.as_secs())?;
        claims.serialize_entry("iat", &self.issued_at.as_secs())?;
        claims.serialize_entry("jti", &uuid::Uuid::new_v4().to_string())?;
        claims.serialize_entry("client_id", self.client_id)?;
        if let Some(scope) = &scope {
            claims.serialize_entry("scope", scope)?;
        }
        if let Some(act) = self.act() {
            claims.serialize_entry("act", &act)?;
        }
        claims.end()
    }
}

impl MintedClaims<'_> {
    /// The current actor outermost, earlier actors nested inside (RFC 8693 §4.1). Only identity
    /// claims go into `act`; `exp`, `nbf` and `aud` mean nothing there.
    fn act(&self) -> Option<Value> {
        let earlier = self.subject.claims.get("act").cloned();
        let Some(actor) = self.actor else {
            return earlier;
        };
        let mut act = Map::new();
        act.insert("sub".into(), json!(actor.subject));
        act.insert("iss".into(), json!(actor.issuer));
        if let Some(earlier) = earlier {
            act.insert("act".into(), earlier);
        }
        Some(Value::Object(act))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(claims: Value) -> ValidatedIdentity {
        ValidatedIdentity {
            upstream: "idp".into(),
            issuer: "https://idp.example".into(),
            subject: "alice".into(),
            expires_at: None,
            scopes: Box::default(),
            claims: serde_json::from_value(claims).expect("an object"),
        }
    }

    fn minted(subject: &ValidatedIdentity, scope: &ScopeSet) -> Value {
        let audience = [Audience::new("orders")];
        let claims = MintedClaims {
            issuer: "https://token-exchange.example",
            client_id: "gateway",
            audience: &audience,
            scope,
            subject,
            actor: None,
            issued_at: UnixTime::from_secs(1_000),
            expires_at: UnixTime::from_secs(1_300),
        };
        serde_json::to_value(&claims).expect("claims serialise")
    }

    #[test]
    fn an_upstream_claim_never_replaces_one_of_ours() {
        let upstream = json!({"iss": "https://evil.example", "aud": "everything", "client_id": "admin",
            "exp": 9_999_999_999_u64, "jti": "replayed", "may_act": {"sub": "mallory"}, "acr": "2"});
        let token = minted(&identity(upstream), &ScopeSet::parse("read").expect("a scope"));

        assert_eq!(token["iss"], "https://token-exchange.example");
        assert_eq!(token["aud"], "orders");
        assert_eq!(token["client_id"], "gateway");
        assert_eq!(token["exp"], 1_300);
        assert_ne!(token["jti"], "replayed");
        assert_eq!(token.get("may_act"), None);
        assert_eq!(token["acr"], "2", "other identity claims are carried over");
    }

    #[test]
    fn an_upstream_scope_claim_is_replaced_by_the_granted_scope_only_when_one_is_granted() {
        let subject = identity(json!({"scope": "upstream-scope"}));

        assert_eq!(minted(&subject, &ScopeSet::parse("read").expect("a scope"))["scope"], "read");
        assert_eq!(minted(&subject, &ScopeSet::default())["scope"], "upstream-scope");
    }
}
