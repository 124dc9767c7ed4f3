//! Configuration reload without restart (SIGHUP): clients, upstreams and forward-auth routes
//! change while the service runs; what only a restart can change is named, not applied.

use std::io::Write as _;

use token_exchange::config::{RouteSettings, Settings};

use crate::helpers::*;

/// The settings the app runs with, for a reload to start from.
fn running(app: &TestApp) -> Settings {
    app.settings.clone()
}

#[tokio::test]
async fn a_reload_adds_a_client_that_may_exchange_at_once() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let token = idp.token(app.now());
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token.as_str()), ("subject_token_type", JWT)];
    assert_eq!(app.post_form_as("/token", "newcomer", "newcomer-secret", &form).await.status(), 401);

    let mut settings = running(&app);
    settings.clients.push(client("newcomer", "newcomer-secret"));
    app.reloader.apply(settings).await.unwrap();

    assert_eq!(app.post_form_as("/token", "newcomer", "newcomer-secret", &form).await.status(), 200);
}

#[tokio::test]
async fn a_removed_client_is_refused_on_its_next_request() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(|s| s.clients.push(client("leaving", "leaving-secret"))).spawn().await;
    let token = idp.token(app.now());
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token.as_str()), ("subject_token_type", JWT)];
    assert_eq!(app.post_form_as("/token", "leaving", "leaving-secret", &form).await.status(), 200);

    let mut settings = running(&app);
    settings.clients.retain(|c| c.client_id != "leaving");
    app.reloader.apply(settings).await.unwrap();

    let refused = app.post_form_as("/token", "leaving", "leaving-secret", &form).await;
    assert_oauth_error(refused, 401, "invalid_client").await;
    assert_eq!(app.exchange(&token, &[]).await.status(), 200, "the other clients are untouched");
}

#[tokio::test]
async fn a_changed_route_audience_applies_to_the_next_decision() {
    let idp = FakeIdp::start().await;
    let route = |audience: &str| RouteSettings {
        name: "api".into(),
        hosts: Vec::new(),
        path_prefix: "/".into(),
        methods: Vec::new(),
        client: CLIENT_ID.into(),
        audience: audience.into(),
        scope: None,
    };
    let app = TestApp::builder(&idp).configure(|s| s.forward_auth.routes = vec![route("orders")]).spawn().await;
    let token = idp.token(app.now());
    let decide = async || {
        let response = app.http.get(app.url("/forward-auth/x")).bearer_auth(&token).send().await.unwrap();
        let header = response.headers()["authorization"].to_str().unwrap().to_owned();
        header.trim_start_matches("Bearer ").to_owned()
    };
    let before = decide().await;

    let mut settings = running(&app);
    settings.forward_auth.routes = vec![route("billing")];
    app.reloader.apply(settings).await.unwrap();

    app.verify_as_downstream(&before, "orders").await;
    app.verify_as_downstream(&decide().await, "billing").await;
}

#[tokio::test]
async fn a_broken_configuration_file_is_refused_and_the_running_one_stays_in_force() {
    let idp = FakeIdp::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let app = TestApp::builder(&idp).configure(|s| s.source = Some(file.path().to_owned())).spawn().await;
    std::fs::write(file.path(), "[server]\nmax_body_bytes = \"big\"\n").unwrap();

    let refused = app.reloader.reload().await.unwrap_err();

    assert!(format!("{refused:#}").contains("max_body_bytes"), "{refused:#}");
    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);
}

#[tokio::test]
async fn verdicts_of_an_upstream_whose_settings_changed_are_dropped() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).with_redis().with_opaque_upstream(idp.introspection_upstream()).spawn().await;
    idp.introspection_active("opaque-token", app.now() + 3600).await;
    assert_eq!(app.exchange_opaque("opaque-token", &[]).await.status(), 200);

    app.reloader.apply(running(&app)).await.unwrap();
    assert_eq!(app.exchange_opaque("opaque-token", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 1, "an unchanged upstream keeps its verdicts");

    let mut settings = running(&app);
    let opaque = settings.upstreams.iter_mut().find(|u| u.introspection_endpoint.is_some()).unwrap();
    opaque.leeway = std::time::Duration::from_secs(5);
    let reloaded = app.reloader.apply(settings).await.unwrap();
    assert_eq!(app.exchange_opaque("opaque-token", &[]).await.status(), 200);

    assert_eq!(reloaded.changed_upstreams, [opaque_name(&app)]);
    assert_eq!(idp.introspections().await, 2, "asked again under the new settings, also past Redis");
}

fn opaque_name(app: &TestApp) -> String {
    app.settings.upstreams.iter().find(|u| u.introspection_endpoint.is_some()).unwrap().name.clone()
}

#[tokio::test]
async fn settings_only_a_restart_can_change_are_named_and_left_as_they_are() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let mut settings = running(&app);
    settings.server.listen = "127.0.0.1:1".parse().unwrap();
    settings.tokens.ttl = std::time::Duration::from_secs(60);
    let reloaded = app.reloader.apply(settings).await.unwrap();

    assert_eq!(reloaded.needs_restart, ["server", "tokens (other than claims)"]);
    let minted = app.exchange(&idp.token(app.now()), &[]).await.json::<serde_json::Value>().await.unwrap();
    assert_eq!(minted["expires_in"], 300, "tokens.ttl keeps its running value");
}

#[tokio::test]
async fn sighup_reads_the_configuration_file_again() {
    let idp = FakeIdp::start().await;
    let data = tempfile::tempdir().unwrap();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndatabase_url = \"sqlite://{}/hup.db\"\n\
         [[upstreams]]\nname = \"idp\"\nissuer = \"{}\"\naudiences = [\"{UPSTREAM_AUDIENCE}\"]\n",
        data.path().display(),
        idp.issuer(),
    );
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(base.as_bytes()).unwrap();
    let server = ServerProcess::serve(file.path(), &[]);
    let port = server.port;
    let ask = async || {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "unsupported")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ask().await, 401, "no client is configured yet");

    let added = format!("[[clients]]\nclient_id = \"{CLIENT_ID}\"\nsecret_hash = \"{}\"\n", secret_hash(CLIENT_SECRET));
    std::fs::write(file.path(), base + &added).unwrap();
    server.signal("HUP");

    let status = eventually("the reloaded client is accepted", async || {
        let status = ask().await;
        (status != 401).then_some(status)
    })
    .await;
    server.stop(false);
    assert_eq!(status, 400, "authenticated, then unsupported_grant_type");
}

#[tokio::test]
async fn a_saved_configuration_file_is_applied_without_a_signal() {
    let idp = FakeIdp::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let app = TestApp::builder(&idp).configure(|s| s.source = Some(file.path().to_owned())).spawn().await;
    let token = idp.token(app.now());
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token.as_str()), ("subject_token_type", JWT)];
    assert_eq!(app.post_form_as("/token", "newcomer", "newcomer-secret", &form).await.status(), 401);

    std::fs::write(
        file.path(),
        format!(
            "[server]\nissuer = \"{ISSUER}\"\n[[upstreams]]\nname = \"idp\"\nissuer = \"{}\"\n\
             audiences = [\"{UPSTREAM_AUDIENCE}\"]\njwks_uri = \"{}{JWKS_PATH}\"\n\
             algorithms = [\"RS256\"]\n[[clients]]\nclient_id = \"newcomer\"\nsecret_hash = \"{}\"\n",
            idp.issuer(),
            idp.issuer(),
            secret_hash("newcomer-secret"),
        ),
    )
    .unwrap();
    app.clock.advance(std::time::Duration::from_secs(3));

    let status = eventually("the saved file is applied", async || {
        let status = app.post_form_as("/token", "newcomer", "newcomer-secret", &form).await.status();
        (status != 401).then_some(status)
    })
    .await;
    assert_eq!(status, 200);
}
