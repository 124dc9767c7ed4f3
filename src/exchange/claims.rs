use serde_json::{Map, Value, json};

use crate::clock::UnixTime;
use crate::vocabulary::{Audience, ScopeSet, ValidatedIdentity};

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

impl MintedClaims<'_> {
    /// Identity claims first, then ours on top, so nothing from upstream can replace them.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut claims: Map<String, Value> = self
            .subject
            .claims
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "act" | "may_act"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let aud = match self.audience {
            [single] => json!(single.as_str()),
            many => json!(many.iter().map(Audience::as_str).collect::<Vec<_>>()),
        };
        let reserved = [
            ("iss", json!(self.issuer)),
            ("sub", json!(self.subject.subject)),
            ("aud", aud),
            ("exp", json!(self.expires_at.as_secs())),
            ("iat", json!(self.issued_at.as_secs())),
            ("jti", json!(uuid::Uuid::new_v4().to_string())),
            ("client_id", json!(self.client_id)),
        ];
        claims.extend(reserved.into_iter().map(|(name, value)| (name.to_owned(), value)));
        if !self.scope.is_empty() {
            claims.insert("scope".into(), json!(self.scope.to_wire()));
        }
        if let Some(act) = self.act() {
            claims.insert("act".into(), act);
        }
        claims
    }

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
