//! The Keycloak that `scripts/test` runs (`KEYCLOAK_URL`), with the realm of
//! `tests/providers/keycloak/realm.json`: users sign in with the password grant (no browser),
//! and the tests change what they need through the admin REST API, as the bootstrap admin
//! service account (`KEYCLOAK_ADMIN_CLIENT_ID`/`KEYCLOAK_ADMIN_CLIENT_SECRET`).

use serde_json::{Value, json};

use super::harness::{provider_url, upstream_from_toml};
use token_exchange::config::UpstreamSettings;

/// The realm `scripts/test` imports at start.
pub const REALM: &str = "token-exchange";
/// Its user for tests that change nothing about users.
pub const ALICE: (&str, &str) = ("alice", "alice-password");
/// The client users sign in to; its access tokens are full JWTs with `aud: token-exchange`.
pub const APP: (&str, &str) = ("app", "app-secret");
/// The client whose access tokens are lightweight: no `aud`, no `sub`, only introspection
/// tells who they belong to.
pub const LIGHTWEIGHT_APP: (&str, &str) = ("lightweight-app", "lightweight-app-secret");
/// token-exchange's own client in Keycloak: the audience of users' tokens, and who introspects.
pub const TOKEN_EXCHANGE: (&str, &str) = ("token-exchange", "introspector-secret");
/// The name the test apps give their Keycloak upstream.
pub const UPSTREAM: &str = "keycloak";
const REALM_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers/keycloak/realm.json");

/// One realm of the running Keycloak.
pub struct Realm {
    base: String,
    name: String,
    http: reqwest::Client,
}

impl Realm {
    /// The realm every test shares.
    pub fn shared() -> Self {
        Self::named(REALM)
    }

    fn named(name: &str) -> Self {
        Self { base: provider_url("KEYCLOAK_URL", "Keycloak"), name: name.to_owned(), http: reqwest::Client::new() }
    }

    /// A realm of the test's own, imported from the same file under a fresh name, for a test
    /// that changes the realm itself (its keys). Removed by [`Realm::delete`].
    pub async fn of_its_own() -> Self {
        let name = format!("te-{}", uuid::Uuid::new_v4().simple());
        let text = std::fs::read_to_string(REALM_FILE).unwrap();
        let mut realm: Value =
            serde_json::from_str(&text.replace(&format!("default-roles-{REALM}"), &format!("default-roles-{name}")))
                .unwrap();
        realm["realm"] = json!(name);
        let own = Self::named(&name);
        let response = own.admin(reqwest::Method::POST, "/admin/realms").json(&realm).send().await.unwrap();
        assert_eq!(response.status(), 201, "realm {name} created: {}", response.text().await.unwrap());
        own
    }

    pub async fn delete(self) {
        let path = format!("/admin/realms/{}", self.name);
        let response = self.admin(reqwest::Method::DELETE, &path).send().await.unwrap();
        assert_eq!(response.status(), 204, "realm {} deleted", self.name);
    }

    /// The `iss` of this realm's tokens, stable because Keycloak runs with a fixed hostname.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.base, self.name)
    }

    /// The realm's OpenID Connect endpoint `name` (`token`, `token/introspect`, `certs`).
    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/protocol/openid-connect/{name}", self.issuer())
    }

    /// An upstream that verifies this realm's JWTs offline (keys found through discovery) and
    /// accepts those meant for token-exchange.
    pub fn jwt_upstream(&self) -> UpstreamSettings {
        upstream_from_toml(&format!(
            r#"
            name = "{UPSTREAM}"
            issuer = "{issuer}"
            audiences = ["{audience}"]
            "#,
            issuer = self.issuer(),
            audience = TOKEN_EXCHANGE.0,
        ))
    }

    /// An upstream that asks this realm's introspection endpoint about every token.
    pub fn introspection_upstream(&self) -> UpstreamSettings {
        upstream_from_toml(&format!(
            r#"
            name = "{UPSTREAM}"
            issuer = "{issuer}"
            introspection_endpoint = "{endpoint}"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            "#,
            issuer = self.issuer(),
            endpoint = self.endpoint("token/introspect"),
            client_id = TOKEN_EXCHANGE.0,
            client_secret = TOKEN_EXCHANGE.1,
        ))
    }

    /// One mixed upstream: a JWT of the realm with an `aud` is verified offline, one without
    /// is introspected, and only the realm's two applications may have asked for the token.
    pub fn mixed_upstream(&self) -> UpstreamSettings {
        upstream_from_toml(&self.mixed_upstream_toml(&self.endpoint("token/introspect")))
    }

    /// The mixed upstream with its introspection endpoint, like its JWKS, read from the realm's
    /// OpenID discovery document: the TOML of its `[[upstreams]]` entry.
    pub fn discovering_mixed_upstream_toml(&self) -> String {
        self.mixed_upstream_toml("discover")
    }

    fn mixed_upstream_toml(&self, introspection_endpoint: &str) -> String {
        format!(
            r#"
            name = "{UPSTREAM}"
            issuer = "{issuer}"
            audiences = ["{client_id}"]
            introspection_endpoint = "{introspection_endpoint}"
            client_id = "{client_id}"
            client_secret = "{client_secret}"
            accept_answers_without_audience = false
            allowed_clients = ["{app}", "{lightweight}"]
            "#,
            issuer = self.issuer(),
            client_id = TOKEN_EXCHANGE.0,
            client_secret = TOKEN_EXCHANGE.1,
            app = APP.0,
            lightweight = LIGHTWEIGHT_APP.0,
        )
    }

    /// The token response of the password grant: `user` signs in to `client` asking `scope`.
    pub async fn sign_in(&self, client: (&str, &str), user: (&str, &str), scope: &str) -> Value {
        let form = [("grant_type", "password"), ("username", user.0), ("password", user.1), ("scope", scope)];
        let response = self
            .http
            .post(self.endpoint("token"))
            .basic_auth(client.0, Some(client.1))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{} signs in to {}: {body}", user.0, client.0);
        body
    }

    /// The access token `user` gets from `client`.
    pub async fn access_token(&self, client: (&str, &str), user: (&str, &str)) -> String {
        self.sign_in(client, user, "openid email profile").await["access_token"].as_str().unwrap().to_owned()
    }

    /// A user of the test's own (name, password, id), so that changing it disturbs no other test.
    pub async fn create_user(&self) -> (String, String, String) {
        let name = format!("user-{}", uuid::Uuid::new_v4().simple());
        let password = format!("{name}-password");
        let user = json!({
            "username": name,
            "enabled": true,
            "email": format!("{name}@example.com"),
            "emailVerified": true,
            "firstName": "Test",
            "lastName": "User",
            "credentials": [{"type": "password", "value": password, "temporary": false}],
        });
        let path = format!("/admin/realms/{}/users", self.name);
        let response = self.admin(reqwest::Method::POST, &path).json(&user).send().await.unwrap();
        assert_eq!(response.status(), 201, "user created");
        let location = response.headers()["location"].to_str().unwrap();
        let id = location.rsplit('/').next().unwrap().to_owned();
        (name, password, id)
    }

    /// Disables or enables a user, as an administrator does in the admin console.
    pub async fn set_user_enabled(&self, id: &str, enabled: bool) {
        let path = format!("/admin/realms/{}/users/{id}", self.name);
        let response = self.admin(reqwest::Method::PUT, &path).json(&json!({"enabled": enabled})).send().await.unwrap();
        assert_eq!(response.status(), 204, "user {id} enabled: {enabled}");
    }

    /// A new generated RSA key with a higher priority than the realm's: Keycloak signs with it
    /// from now on, and keeps publishing the old one.
    pub async fn rotate_signing_key(&self) {
        let realm: Value = self
            .admin(reqwest::Method::GET, &format!("/admin/realms/{}", self.name))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let provider = json!({
            "name": "rotated-rsa",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm["id"],
            "config": {"priority": ["1000"], "keySize": ["2048"], "algorithm": ["RS256"]},
        });
        let path = format!("/admin/realms/{}/components", self.name);
        let response = self.admin(reqwest::Method::POST, &path).json(&provider).send().await.unwrap();
        assert_eq!(response.status(), 201, "key provider added");
    }

    /// A request to the admin REST API, as the bootstrap admin service account.
    fn admin(&self, method: reqwest::Method, path: &str) -> AdminRequest<'_> {
        AdminRequest { realm: self, builder: self.http.request(method, format!("{}{path}", self.base)) }
    }

    async fn admin_token(&self) -> String {
        let client_id = provider_url("KEYCLOAK_ADMIN_CLIENT_ID", "Keycloak");
        let secret = provider_url("KEYCLOAK_ADMIN_CLIENT_SECRET", "Keycloak");
        let response = self
            .http
            .post(format!("{}/realms/master/protocol/openid-connect/token", self.base))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap_or_else(|| panic!("an admin token: {body}")).to_owned()
    }
}

/// An admin request that gets its bearer token when sent.
struct AdminRequest<'a> {
    realm: &'a Realm,
    builder: reqwest::RequestBuilder,
}

impl AdminRequest<'_> {
    fn json(self, body: &Value) -> Self {
        Self { realm: self.realm, builder: self.builder.json(body) }
    }

    async fn send(self) -> reqwest::Result<reqwest::Response> {
        let token = self.realm.admin_token().await;
        self.builder.bearer_auth(token).send().await
    }
}
