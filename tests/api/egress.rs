//! Upstream requests leave through the network's egress proxy: the one `upstream_http.proxy`
//! names, or the environment's (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`), or none when it says
//! `direct`. The proxy is a real nginx forward proxy (tests/proxies/nginx-egress.conf) that
//! logs every request it passes on.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::e2e::harness::{find_binary, free_port, render};
use crate::helpers::*;

/// The nginx forward proxy, killed on drop.
struct EgressProxy {
    child: Child,
    port: u16,
    access_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EgressProxy {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, access_log) = (free_port(), dir.path().join("access.log"));
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxies/nginx-egress.conf"));
        let values = [("LISTEN_PORT", port.to_string()), ("ACCESS_LOG", access_log.display().to_string())];
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, render(&template.unwrap(), &values)).unwrap();
        let child = Command::new(find_binary("NGINX_BIN", "nginx"))
            .args(["-p", &format!("{}/", dir.path().display()), "-e", "stderr", "-c", config.to_str().unwrap()])
            .args(["-g", &format!("daemon off; master_process off; pid {}/nginx.pid;", dir.path().display())])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let proxy = Self { child, port, access_log, _dir: dir };
        eventually("the egress proxy listens", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok().then_some(())
        })
        .await;
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request lines it passed on so far.
    fn passed_on(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn introspection_through(idp: &FakeIdp) -> String {
    format!("POST {}{INTROSPECT_PATH} HTTP/1.1", idp.issuer())
}

#[tokio::test]
async fn upstream_requests_go_through_the_configured_proxy() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| s.upstream_http.proxy = proxy.url())
        .spawn()
        .await;
    idp.introspection_active("proxied", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("proxied", &[]).await.status(), 200);
    assert!(proxy.passed_on().contains(&introspection_through(&idp)), "{}", proxy.passed_on());
}

#[tokio::test]
async fn hosts_in_no_proxy_are_reached_directly() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| {
            s.upstream_http.proxy = proxy.url();
            s.upstream_http.no_proxy = vec!["127.0.0.1".into()];
        })
        .spawn()
        .await;
    idp.introspection_active("direct", app.now() + 600).await;

    assert_eq!(app.exchange_opaque("direct", &[]).await.status(), 200);
    assert_eq!(proxy.passed_on(), "", "nothing went through the proxy");
}

#[tokio::test]
async fn a_proxy_that_cannot_be_reached_is_temporarily_unavailable_and_asks_nobody() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| s.upstream_http.proxy = format!("http://127.0.0.1:{}", free_port()))
        .spawn()
        .await;
    idp.introspection_active("stranded", app.now() + 600).await;

    assert_oauth_error(app.exchange_opaque("stranded", &[]).await, 503, "temporarily_unavailable").await;
    assert_eq!(idp.introspections().await, 0);
}

/// `token-exchange serve` with `idp`'s introspection, `proxy` as its `upstream_http.proxy`
/// (unset when `None`), and `environment`.
fn server(idp: &FakeIdp, proxy: Option<&str>, environment: &[(&str, String)]) -> ServerProcess {
    let data = tempfile::tempdir().unwrap().keep();
    let proxy = proxy.map(|proxy| format!("[upstream_http]\nproxy = \"{proxy}\"\n")).unwrap_or_default();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndatabase_url = \"sqlite://{data}/egress.db\"\n{proxy}\
         [[upstreams]]\nname = \"opaque\"\nissuer = \"{issuer}/opaque\"\n\
         introspection_endpoint = \"{issuer}{INTROSPECT_PATH}\"\nclient_id = \"{UPSTREAM_CLIENT_ID}\"\n\
         client_secret = \"{UPSTREAM_CLIENT_SECRET}\"\ndefault_for_opaque = true\n\
         [[clients]]\nclient_id = \"{CLIENT_ID}\"\nsecret_hash = \"{hash}\"\n",
        data = data.display(),
        issuer = idp.issuer(),
        hash = secret_hash(CLIENT_SECRET),
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(config.as_bytes()).unwrap();
    let (_, path) = file.keep().unwrap();
    let mut server = ServerProcess::serve(&path, environment);
    server.drain_output();
    server
}

async fn exchange_at(server: &ServerProcess, token: &str) -> reqwest::Response {
    let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token), ("subject_token_type", ACCESS_TOKEN)];
    let url = format!("http://127.0.0.1:{}/token", server.port);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    client.post(url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn without_a_configured_proxy_the_environments_http_proxy_is_used() {
    let (idp, proxy) = (FakeIdp::start().await, EgressProxy::start().await);
    // An exception list the machine may set must not send the test around the proxy.
    let environment = [("HTTP_PROXY", proxy.url()), ("NO_PROXY", String::new()), ("no_proxy", String::new())];
    let server = server(&idp, None, &environment);
    idp.introspection_active("from-environment", real_now() + 3600).await;

    assert_eq!(exchange_at(&server, "from-environment").await.status(), 200);
    assert!(proxy.passed_on().contains(&introspection_through(&idp)), "{}", proxy.passed_on());
    server.stop(false);
}

#[tokio::test]
async fn direct_ignores_the_environments_proxy() {
    let idp = FakeIdp::start().await;
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let server = server(&idp, Some("direct"), &[("HTTP_PROXY", nowhere.clone()), ("ALL_PROXY", nowhere)]);
    idp.introspection_active("straight", real_now() + 3600).await;

    assert_eq!(exchange_at(&server, "straight").await.status(), 200);
    server.stop(false);
}

#[expect(clippy::disallowed_methods, reason = "a process of its own runs on the real clock")]
fn real_now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}
