//! What `token-exchange demo` prints: where everything is, then numbered shell commands that
//! walk through the service, to be pasted in order into one shell (later steps use the
//! variables earlier ones set). The test `tests/api/demo.rs` runs them exactly so.

use std::path::PathBuf;
use std::time::Duration;

use super::idp::{AUDIENCE as IDP_AUDIENCE, TOKEN_PATH};
use super::{AUDIENCE, CLIENT_ID, CLIENT_SECRET, ROUTE, ROUTE_PATH, ROUTE_SCOPE, SCOPES};

const RULE: &str = "================================================================================";
/// Pulls `access_token` out of a JSON answer with tools every shell has.
const ACCESS_TOKEN: &str = r#"grep -o '"access_token":"[^"]*"' | cut -d'"' -f4"#;
const EXCHANGE_GRANT: &str = "grant_type=urn:ietf:params:oauth:grant-type:token-exchange";
const SUBJECT_TYPE: &str = "subject_token_type=urn:ietf:params:oauth:token-type:access_token";

pub struct Walkthrough {
    /// token-exchange's base URL, which is also its issuer.
    pub service: String,
    /// The DEMO identity provider's base URL.
    pub idp: String,
    /// How the commands call this binary (for `verify-token`).
    pub program: String,
    pub database: PathBuf,
    /// The lifetime of minted tokens (`tokens.ttl`).
    pub minted_ttl: Duration,
}

impl Walkthrough {
    pub fn render(&self) -> String {
        let Self { service, idp, database, .. } = self;
        let scopes = SCOPES.join(", ");
        let exchange = |subject: &str| {
            format!(
                "curl -s {service}/token -u {CLIENT_ID}:{CLIENT_SECRET} \\\n  -d {EXCHANGE_GRANT} -d {SUBJECT_TYPE} \\\n  \
                 -d subject_token=\"${subject}\" -d audience={AUDIENCE} -d scope={ROUTE_SCOPE}"
            )
        };
        let mut text = String::new();
        let mut line = |content: &str| {
            text.push_str(content);
            text.push('\n');
        };
        line(RULE);
        line(" token-exchange DEMO: for trying it on this machine. For real use: token-exchange serve");
        line(RULE);
        line(&format!(" token-exchange           {service}  (the issuer; signing keys in {})", database.display()));
        line(&format!(" DEMO identity provider   {idp}  (upstream \"demo\": its JWTs are checked against"));
        line(
            "                                                 its JWKS, its opaque tokens by introspection and userinfo)",
        );
        line(&format!(
            " demo client              {CLIENT_ID}, secret {CLIENT_SECRET} (audience {AUDIENCE}; scopes {scopes})"
        ));
        line(&format!(
            " forward-auth route       {ROUTE}: path {ROUTE_PATH}, audience {AUDIENCE}, scope {ROUTE_SCOPE}"
        ));
        line(" Both listen on loopback only. The DEMO identity provider issues tokens for the user");
        line(" \"demo-user\" to anyone on this machine, and marks every answer with an X-Demo header.");
        line("");
        line(" Paste these into a shell, in order (they need curl):");
        line("");
        let steps = [
            format!(
                "# 1. Get access tokens for the demo user from the DEMO identity provider: an opaque one and\n\
                 #    a JWT (aud {IDP_AUDIENCE}).\n\
                 SUBJECT=$(curl -s -X POST '{idp}{TOKEN_PATH}?kind=opaque' | {ACCESS_TOKEN}); echo \"$SUBJECT\"\n\
                 SUBJECT_JWT=$(curl -s -X POST '{idp}{TOKEN_PATH}?kind=jwt' | {ACCESS_TOKEN}); echo \"$SUBJECT_JWT\""
            ),
            format!(
                "# 2. Exchange the opaque token at /token as {CLIENT_ID} for an internal JWT (the identity\n\
                 #    provider is asked by introspection and userinfo), then the JWT (checked offline\n\
                 #    against the identity provider's JWKS):\n\
                 EXCHANGED=$({}); echo \"$EXCHANGED\"\n\
                 MINTED=$(printf '%s' \"$EXCHANGED\" | {ACCESS_TOKEN})\n\
                 {}; echo",
                exchange("SUBJECT"),
                exchange("SUBJECT_JWT"),
            ),
            format!(
                "# 3. Ask /forward-auth for a decision, as nginx's auth_request does for GET {ROUTE_PATH}/42: 200,\n\
                 #    with the internal token in Authorization. The identity comes from the cache this\n\
                 #    time: no call to the identity provider.\n\
                 curl -s -o /dev/null -D - {service}/forward-auth -H \"Authorization: Bearer $SUBJECT\" \\\n  \
                 -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: {ROUTE_PATH}/42'"
            ),
            format!(
                "# 4. Verify the minted JWT the way a downstream service does: offline, against our JWKS\n\
                 #    (the key named by the token's kid is one of these).\n\
                 curl -s {service}/.well-known/jwks.json; echo\n\
                 {} verify-token --jwks-url {service}/.well-known/jwks.json \\\n  \
                 --issuer {service} --audience {AUDIENCE} \"$MINTED\"",
                self.program
            ),
            format!(
                "# 5. Revoke the demo user's opaque token (RFC 7009): its cached identity is dropped and the\n\
                 #    next exchange of it is refused. (The JWT minted from it stays valid until its exp, at\n\
                 #    most {} s: that is why minted tokens are short-lived.)\n\
                 curl -s -o /dev/null -w 'revoke: HTTP %{{http_code}}\\n' {service}/revoke -u {CLIENT_ID}:{CLIENT_SECRET} \\\n  \
                 -d token=\"$SUBJECT\"\n\
                 {}; echo",
                self.minted_ttl.as_secs(),
                exchange("SUBJECT"),
            ),
            format!(
                "# 6. The identity cache in /metrics: tier l1 is the in-process cache; its hit is step 3.\n\
                 curl -s {service}/metrics | grep cache_lookups"
            ),
        ];
        for step in &steps {
            line(step);
            line("");
        }
        line(RULE);
        line(" The demo runs until Ctrl-C.");
        line(RULE);
        text
    }
}

/// `word` as one shell word: as it is when that is safe, else in single quotes.
pub fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_owned();
    }
    let mut quoted = String::from("'");
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str(r"'\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/work/target/debug/token-exchange"), "/work/target/debug/token-exchange");
        assert_eq!(shell_word("/my dir/token-exchange"), "'/my dir/token-exchange'");
        assert_eq!(shell_word("/it's/here"), r"'/it'\''s/here'");
        assert_eq!(shell_word(""), "''");
    }
}
