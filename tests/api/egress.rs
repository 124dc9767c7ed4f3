//! Upstream requests leave through the network's egress proxy: the one `upstream_http.proxy`
//! names, or the environment's (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`), or none when it says
//! `direct`. The proxy is a real nginx forward proxy (tests/proxies/nginx-egress.conf) that
//! logs every request it passes on and refuses tunnels, or, where a tunnel must carry the
//! request, Envoy opening `CONNECT` tunnels for a client with the proxy's credentials
//! (tests/proxies/envoy-egress-tunnel.yaml).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use token_exchange::config::Settings;

use crate::e2e::harness::free_port;
use crate::helpers::*;

/// The nginx forward proxy.
struct EgressProxy(ProxyProcess);

impl EgressProxy {
    async fn start() -> Self {
        Self(ProxyProcess::nginx("nginx-egress.conf", &[]).await)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.0.port)
    }

    /// Waits until it has logged `request_line` (it logs a request once it has answered it).
    async fn logs(&self, request_line: &str) {
        let what = format!("the proxy logs {request_line}");
        eventually(&what, async || self.passed_on().contains(request_line).then_some(())).await;
    }

    /// The request lines it passed on so far.
    fn passed_on(&self) -> String {
        std::fs::read_to_string(self.0.file("access.log")).unwrap_or_default()
    }
}

/// An HTTPS introspection endpoint that only a proxy could reach: nginx refuses the tunnel,
/// after logging that it was asked for it.
const BEHIND_THE_PROXY: &str = "https://idp.example.test/introspect";
const TUNNEL: &str = "CONNECT idp.example.test:443 HTTP/1.1";
/// An address nothing answers on (TEST-NET-1), for a request that must not reach the proxy.
const UNROUTABLE: &str = "https://192.0.2.1/introspect";

async fn app_with(idp: &FakeIdp, endpoint: &str, egress: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::builder(idp)
        .with_opaque_upstream(idp.introspection_upstream_at(endpoint))
        .configure(|s| {
            s.upstream_http.connect_timeout = Duration::from_millis(500);
            egress(s);
        })
        .spawn()
        .await
}

#[tokio::test]
async fn an_https_upstream_is_asked_for_through_a_tunnel_of_the_configured_proxy() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let app = app_with(&idp, BEHIND_THE_PROXY, |s| s.upstream_http.proxy = proxy.url()).await;

    // The tunnel refused, the upstream could not be asked: a transient failure, not a verdict.
    assert_oauth_error(app.exchange_opaque("tunnelled", &[]).await, 503, "temporarily_unavailable").await;
    proxy.logs(TUNNEL).await;
}

#[tokio::test]
async fn hosts_in_no_proxy_are_reached_directly() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let app = app_with(&idp, UNROUTABLE, |s| {
        s.upstream_http.proxy = proxy.url();
        s.upstream_http.no_proxy = vec!["192.0.2.0/24".into()];
    })
    .await;

    assert_oauth_error(app.exchange_opaque("excepted", &[]).await, 503, "temporarily_unavailable").await;
    assert_eq!(proxy.passed_on(), "", "nothing went through the proxy");
}

/// A proxy's localhost is not ours, and a loopback upstream may be plain HTTP.
#[tokio::test]
async fn a_loopback_upstream_is_reached_directly_even_with_a_proxy() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| s.upstream_http.proxy = proxy.url())
        .spawn()
        .await;
    idp.introspection_active("local", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("local", &[]).await.status(), 200);
    assert_eq!(proxy.passed_on(), "", "nothing went through the proxy");
}

#[tokio::test]
async fn a_proxy_that_cannot_be_reached_is_temporarily_unavailable() {
    let idp = FakeIdp::start().await;
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let app = app_with(&idp, BEHIND_THE_PROXY, |s| s.upstream_http.proxy = nowhere).await;

    assert_oauth_error(app.exchange_opaque("stranded", &[]).await, 503, "temporarily_unavailable").await;
}

/// What the tunnelling proxy asks of its clients, as `user:password`.
const PROXY_CREDENTIALS: &str = "egress:egress-password";

/// Envoy, opening tunnels to the HTTPS front of the provider for whoever presents
/// [`PROXY_CREDENTIALS`].
struct TunnellingProxy(ProxyProcess);

impl TunnellingProxy {
    async fn start(front: &ProxyProcess) -> Self {
        let credentials = format!("Basic {}", STANDARD.encode(PROXY_CREDENTIALS));
        let values = [("FRONT_PORT", front.port.to_string()), ("PROXY_AUTHORIZATION", credentials)];
        Self(ProxyProcess::envoy("envoy-egress-tunnel.yaml", &values).await)
    }

    /// Its URL with `user:password` in it, as an operator configures a proxy that wants them.
    fn url_as(&self, user_and_password: &str) -> String {
        format!("http://{user_and_password}@127.0.0.1:{}", self.0.port)
    }

    async fn logs(&self, line: &str) {
        let what = format!("the tunnelling proxy logs {line}");
        let log = self.0.file("access.log");
        eventually(&what, async || std::fs::read_to_string(&log).unwrap_or_default().contains(line).then_some(()))
            .await;
    }
}

/// A name that resolves nowhere (RFC 2606): an answer from it came through the tunnel.
const ONLY_THROUGH_THE_TUNNEL: &str = "https://idp.example.test/introspect";

/// The provider behind its HTTPS front, the tunnelling proxy before it, and an app that
/// presents `user_and_password` to that proxy, with `token` active at the provider.
struct BehindTheTunnel {
    idp: FakeIdp,
    proxy: TunnellingProxy,
    app: TestApp,
    _front: ProxyProcess,
}

async fn behind_the_tunnel(user_and_password: &str, token: &str) -> BehindTheTunnel {
    let idp = FakeIdp::start().await;
    let front = https_front(&idp).await;
    let proxy = TunnellingProxy::start(&front).await;
    let app = app_with(&idp, ONLY_THROUGH_THE_TUNNEL, |s| {
        s.upstream_http.proxy = proxy.url_as(user_and_password);
        s.upstream_http.ca_file = Some(required_env("TEST_TLS_CA").into());
    })
    .await;
    idp.introspection_active(token, app.now() + 600).await;
    BehindTheTunnel { idp, proxy, app, _front: front }
}

#[tokio::test]
async fn an_https_upstream_answers_through_the_proxys_tunnel_opened_with_the_configured_credentials() {
    let BehindTheTunnel { idp, proxy, app, _front } = behind_the_tunnel(PROXY_CREDENTIALS, "tunnelled").await;

    assert_eq!(app.exchange_opaque("tunnelled", &[]).await.status(), 200);
    assert_eq!(idp.introspections().await, 1);
    proxy.logs("CONNECT idp.example.test:443 200").await;
}

#[tokio::test]
async fn a_tunnel_the_proxy_refuses_leaves_the_upstream_unasked() {
    let BehindTheTunnel { idp, proxy, app, _front } = behind_the_tunnel("egress:not-the-password", "refused").await;

    assert_oauth_error(app.exchange_opaque("refused", &[]).await, 503, "temporarily_unavailable").await;
    assert_eq!(idp.introspections().await, 0);
    proxy.logs("CONNECT idp.example.test:443 407").await;
}

/// `token-exchange serve` with an introspection upstream at `endpoint`, `proxy` as its
/// `upstream_http.proxy` (unset when `None`), and `environment`.
fn server(idp: &FakeIdp, endpoint: &str, proxy: Option<&str>, environment: &[(&str, String)]) -> ServerProcess {
    let data = tempfile::tempdir().unwrap().keep();
    let proxy = proxy.map(|proxy| format!("proxy = \"{proxy}\"\n")).unwrap_or_default();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndatabase_url = \"sqlite://{data}/egress.db\"\n\
         [upstream_http]\nconnect_timeout = \"500ms\"\n{proxy}\
         [[upstreams]]\nname = \"opaque\"\nissuer = \"{issuer}/opaque\"\n\
         introspection_endpoint = \"{endpoint}\"\nclient_id = \"{UPSTREAM_CLIENT_ID}\"\n\
         client_secret = \"{UPSTREAM_CLIENT_SECRET}\"\ndefault_for_opaque = true\n\
         [[clients]]\nclient_id = \"{CLIENT_ID}\"\nsecret_hash = \"{hash}\"\n",
        data = data.display(),
        issuer = idp.issuer(),
        hash = secret_hash(CLIENT_SECRET),
    );
    let mut server = ServerProcess::serve(&kept_config_file(&config), environment);
    server.drain_output();
    server
}

async fn exchange_at(server: &ServerProcess, token: &str) -> reqwest::Response {
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token), ("subject_token_type", ACCESS_TOKEN)];
    let url = format!("http://127.0.0.1:{}/token", server.port);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    client.post(url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).form(&form).send().await.unwrap()
}

/// The environment a machine may give the process, with the proxy at `url` and no exceptions.
fn environment_naming(url: String) -> [(&'static str, String); 3] {
    [("HTTPS_PROXY", url), ("NO_PROXY", String::new()), ("no_proxy", String::new())]
}

#[tokio::test]
async fn without_a_configured_proxy_the_environments_is_used() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let server = server(&idp, BEHIND_THE_PROXY, None, &environment_naming(proxy.url()));

    assert_eq!(exchange_at(&server, "from-environment").await.status(), 503);
    proxy.logs(TUNNEL).await;
    server.stop(false);
}

#[tokio::test]
async fn direct_ignores_the_environments_proxy() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let server = server(&idp, UNROUTABLE, Some("direct"), &environment_naming(proxy.url()));

    assert_eq!(exchange_at(&server, "straight").await.status(), 503);
    assert_eq!(proxy.passed_on(), "", "nothing went through the proxy");
    server.stop(false);
}

/// The environment's proxy leaves loopback alone too.
#[tokio::test]
async fn the_environments_proxy_is_not_used_for_a_loopback_upstream() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let endpoint = format!("{}{INTROSPECT_PATH}", idp.issuer());
    let mut environment = environment_naming(proxy.url()).to_vec();
    environment.push(("HTTP_PROXY", proxy.url()));
    let server = server(&idp, &endpoint, None, &environment);
    idp.introspection_active("local", real_now() + 3600).await;

    assert_eq!(exchange_at(&server, "local").await.status(), 200);
    assert_eq!(proxy.passed_on(), "", "nothing went through the proxy");
    server.stop(false);
}
