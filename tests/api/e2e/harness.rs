//! One gateway stack per test: the identity provider double, the service configured with the
//! routes of `examples/token-exchange.toml`, a backend that records what reaches it, and a real
//! proxy run from its example configuration, all on 127.0.0.1 and ephemeral ports.
//!
//! The proxy is a child process in a temporary folder of its own: its configuration is rendered
//! there, and everything it writes (pid file, temp and cache folders, Caddy's data) stays there.
//! It is killed, and the folder removed, when the test drops it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HOST};
use token_exchange::config::Settings;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{FakeIdp, TestApp, client, eventually};

/// The host of the API in the example routes.
pub const API_HOST: &str = "api.example.com";
/// What the backend answers to whatever reaches it.
pub const BACKEND_BODY: &str = "hello from the backend";
/// An admin client, which may revoke any token.
pub const ADMIN_ID: &str = "ops";
pub const ADMIN_SECRET: &str = "ops-secret";

/// The proxies, as configured by the files in `examples/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// `examples/nginx/nginx.conf`: `auth_request`, a plain and a caching server.
    Nginx,
    /// `examples/envoy/http.yaml`: ext_authz with an HTTP service below `/forward-auth`.
    EnvoyHttp,
    /// `examples/envoy/grpc.yaml`: ext_authz over gRPC on `forward_auth.grpc_listen`.
    EnvoyGrpc,
    /// `examples/traefik/`: a ForwardAuth middleware.
    Traefik,
    /// `examples/caddy/Caddyfile`: `forward_auth`.
    Caddy,
}

impl Proxy {
    /// Whether a refusal's `Retry-After` reaches the client. Envoy's HTTP ext_authz answers any
    /// 5xx of the authorization service with its own `status_on_error`, without its headers.
    pub fn passes_retry_after(self) -> bool {
        !matches!(self, Self::EnvoyHttp)
    }

    /// What the client gets when the service does not answer at all: the request never passes.
    pub fn status_when_the_service_is_down(self) -> u16 {
        match self {
            Self::Nginx | Self::EnvoyHttp | Self::EnvoyGrpc => 503,
            Self::Traefik => 500,
            Self::Caddy => 502,
        }
    }

    /// The example files, as (path below `examples/`, name in the proxy's folder).
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Nginx => &[("nginx/nginx.conf", "nginx.conf")],
            Self::EnvoyHttp => &[("envoy/http.yaml", "envoy.yaml")],
            Self::EnvoyGrpc => &[("envoy/grpc.yaml", "envoy.yaml")],
            Self::Traefik => &[("traefik/traefik.yml", "traefik.yml"), ("traefik/dynamic.yml", "dynamic.yml")],
            Self::Caddy => &[("caddy/Caddyfile", "Caddyfile")],
        }
    }

    fn binary(self) -> PathBuf {
        match self {
            Self::Nginx => find_binary("NGINX_BIN", "nginx"),
            Self::EnvoyHttp | Self::EnvoyGrpc => find_binary("ENVOY_BIN", "envoy"),
            Self::Traefik => find_binary("TRAEFIK_BIN", "traefik"),
            Self::Caddy => find_binary("CADDY_BIN", "caddy"),
        }
    }

    /// The configuration file its command line reads, in its folder.
    pub fn main_config(self) -> &'static str {
        match self {
            Self::Nginx => "nginx.conf",
            Self::EnvoyHttp | Self::EnvoyGrpc => "envoy.yaml",
            Self::Traefik => "traefik.yml",
            Self::Caddy => "Caddyfile",
        }
    }

    /// The command line that runs the rendered configuration in `dir` in the foreground.
    pub fn command(self, dir: &Path) -> Command {
        let path = |name: &str| dir.join(name).display().to_string();
        let mut command = Command::new(self.binary());
        match self {
            // One process (no workers to outlive a killed master, nor to switch to another
            // user that could not write the temporary folder), logging to standard error.
            Self::Nginx => command.args([
                "-p",
                &format!("{}/", dir.display()),
                "-e",
                "stderr",
                "-c",
                &path(self.main_config()),
                "-g",
                &format!("daemon off; master_process off; pid {};", path("nginx.pid")),
            ]),
            Self::EnvoyHttp | Self::EnvoyGrpc => command.args([
                "-c",
                &path(self.main_config()),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ]),
            Self::Traefik => command.arg(format!("--configFile={}", path(self.main_config()))),
            Self::Caddy => command.args(["run", "--config", &path(self.main_config()), "--adapter", "caddyfile"]),
        };
        // Whatever a proxy keeps in a home or data folder goes to its own folder.
        command
            .current_dir(dir)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null());
        command
    }
}

/// `$variable` when set, else `target/test-venv/bin/NAME` (where `scripts/test` installs the
/// PyPI-packaged proxies), else the first `NAME` on the `PATH` or in `/usr/sbin`.
pub fn find_binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin").join(name);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv)
        .chain(std::env::split_paths(&path).map(|dir| dir.join(name)))
        .chain(std::iter::once(Path::new("/usr/sbin").join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("no {name} binary: set {variable}, or run scripts/test, which installs it"))
}

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `template` with every `{{NAME}}` replaced; fails on a placeholder left unreplaced.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    let rendered =
        values.iter().fold(template.to_owned(), |text, (name, value)| text.replace(&format!("{{{{{name}}}}}"), value));
    if let Some(at) = rendered.find("{{") {
        let rest = &rendered[at..];
        panic!("unreplaced placeholder {}", &rest[..rest.find("}}").map_or(rest.len(), |end| end + 2)]);
    }
    rendered
}

/// Where the proxy sends what it decides about.
#[derive(Debug, Clone, Copy)]
pub struct Upstreams {
    /// The service's HTTP port.
    pub auth: u16,
    /// The service's gRPC port, for Envoy's gRPC mode.
    pub grpc: Option<u16>,
    pub backend: u16,
}

/// A proxy running in the background; killed on drop.
pub struct RunningProxy {
    pub kind: Proxy,
    child: Child,
    listen: u16,
    cached_listen: u16,
    log: PathBuf,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl RunningProxy {
    /// Renders the example configuration, starts the proxy and waits until it answers through
    /// its configuration. Tries new ports when another process took one of them meanwhile.
    pub async fn start(kind: Proxy, upstreams: Upstreams) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(kind, upstreams).await {
                Ok(proxy) => return proxy,
                Err(log) if attempts < 3 && log.to_ascii_lowercase().contains("address already in use") => {}
                Err(log) => panic!("{kind:?} did not start:\n{log}"),
            }
        }
    }

    async fn try_start(kind: Proxy, upstreams: Upstreams) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let (listen, cached_listen) = (free_port(), free_port());
        let values = [
            ("AUTH_PORT", upstreams.auth.to_string()),
            ("GRPC_PORT", upstreams.grpc.map(|port| port.to_string()).unwrap_or_default()),
            ("BACKEND_PORT", upstreams.backend.to_string()),
            ("LISTEN_PORT", listen.to_string()),
            ("CACHED_LISTEN_PORT", cached_listen.to_string()),
            ("CACHE_DIR", dir.path().join("cache").display().to_string()),
            ("DYNAMIC_CONFIG", dir.path().join("dynamic.yml").display().to_string()),
        ];
        for (template, name) in kind.templates() {
            let text = std::fs::read_to_string(example_path(template)).unwrap();
            std::fs::write(dir.path().join(name), render(&text, &values)).unwrap();
        }
        let log = dir.path().join("proxy.log");
        let output = File::create(&log).unwrap();
        let child = kind
            .command(dir.path())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {:?}: {error}", kind.binary()));
        let mut proxy = Self { kind, child, listen, cached_listen, log, _dir: dir };
        proxy.wait_until_ready().await?;
        Ok(proxy)
    }

    /// Ready once a request through the proxy gets an answer other than a 404: Traefik
    /// listens before it has loaded its routes, and answers 404 until then.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let url = self.url("/");
        let what = format!("{:?} answers on {url}", self.kind);
        eventually(&what, async || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(format!("exited with {status}:\n{}", self.log())));
            }
            match probe.get(&url).header(HOST, API_HOST).send().await {
                Ok(response) if response.status() != 404 => Some(Ok(())),
                _ => None,
            }
        })
        .await
    }

    /// `path` through the proxy.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen)
    }

    /// `path` through nginx's second server, which caches decisions.
    pub fn cached_url(&self, path: &str) -> String {
        assert_eq!(self.kind, Proxy::Nginx, "only the nginx example caches decisions");
        format!("http://127.0.0.1:{}{path}", self.cached_listen)
    }

    /// What the proxy wrote so far (standard output and error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn example_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(relative)
}

/// `examples/token-exchange.toml`, checked as the service checks a configuration file (without
/// the environment layer, so that no variable of the test's environment changes it).
pub fn example_settings() -> Settings {
    let path = example_path("token-exchange.toml");
    let settings: Settings = Figment::from(Toml::file_exact(&path))
        .extract()
        .unwrap_or_else(|error| panic!("{} does not load: {error}", path.display()));
    settings.validate().unwrap_or_else(|error| panic!("{} is invalid: {error}", path.display()));
    settings
}

/// The API behind the proxy: answers every request 200 and keeps them for the test to read.
pub struct Backend {
    server: MockServer,
}

impl Backend {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string(BACKEND_BODY)).mount(&server).await;
        Self { server }
    }

    pub fn port(&self) -> u16 {
        self.server.address().port()
    }

    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// The one request that reached the backend.
    pub async fn only_request(&self) -> wiremock::Request {
        let mut requests = self.requests().await;
        assert_eq!(requests.len(), 1, "requests that reached the backend: {requests:?}");
        requests.remove(0)
    }

    pub async fn reset(&self) {
        self.server.reset().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string(BACKEND_BODY))
            .mount(&self.server)
            .await;
    }
}

/// Everything between an internet client and the backend, for one test.
pub struct Stack {
    pub idp: FakeIdp,
    pub app: TestApp,
    pub backend: Backend,
    pub proxy: RunningProxy,
    http: reqwest::Client,
}

impl Stack {
    pub async fn start(proxy: Proxy) -> Self {
        Self::start_with(proxy, |_| {}).await
    }

    /// The service with the example's `[forward_auth]` and `[tokens] claims`, the identity
    /// provider double for JWTs and (as `opaque`) for introspection, the admin client `ops`, and
    /// whatever `change` adds; then the backend and the proxy in front of both.
    pub async fn start_with(proxy: Proxy, change: impl FnOnce(&mut Settings)) -> Self {
        let idp = FakeIdp::start().await;
        let example = example_settings();
        let grpc = (proxy == Proxy::EnvoyGrpc).then(free_port);
        let app = TestApp::builder(&idp)
            .with_opaque_upstream(idp.introspection_upstream())
            .configure(|settings| {
                settings.forward_auth = example.forward_auth.clone();
                settings.forward_auth.grpc_listen = grpc.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
                settings.tokens.claims.clone_from(&example.tokens.claims);
                let mut admin = client(ADMIN_ID, ADMIN_SECRET);
                admin.admin = true;
                settings.clients.push(admin);
                change(settings);
            })
            .spawn()
            .await;
        let backend = Backend::start().await;
        let auth = app.address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap();
        let proxy = RunningProxy::start(proxy, Upstreams { auth, grpc, backend: backend.port() }).await;
        Self { idp, app, backend, proxy, http: reqwest::Client::new() }
    }

    /// A request of the internet client to `path` on the API's host, through the proxy.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.proxy.url(path)).header(HOST, API_HOST)
    }

    /// The same through nginx's caching server.
    pub fn cached_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.proxy.cached_url(path)).header(HOST, API_HOST)
    }

    /// GET `path` with `token` as the bearer credential, or none.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request.send().await.unwrap()
    }

    /// A JWT of the identity provider, valid now, with `changes` to its claims.
    pub fn token_with(&self, changes: serde_json::Value) -> String {
        self.idp.token_with(self.app.now(), changes)
    }

    /// The bearer token of the one request that reached the backend, verified as a downstream
    /// service verifies it, with `audience`; and its claims.
    pub async fn internal_token_at_backend(
        &self,
        audience: &str,
    ) -> (String, serde_json::Map<String, serde_json::Value>) {
        let request = self.backend.only_request().await;
        let token = bearer_of(&request);
        let claims = self.app.verify_as_downstream(&token, audience).await;
        (token, claims)
    }

    /// The decisions the service made under `route` with `outcome`.
    pub async fn decisions(&self, route: &str, outcome: &str) -> f64 {
        let metrics = self.app.metrics().await;
        metrics
            .value("token_exchange_forward_auth_decisions_total", &[("route", route), ("outcome", outcome)])
            .unwrap_or(0.0)
    }
}

/// The bearer token of a request that reached the backend.
pub fn bearer_of(request: &wiremock::Request) -> String {
    let values: Vec<_> = request.headers.get_all("authorization").iter().collect();
    assert_eq!(values.len(), 1, "one Authorization header at the backend: {values:?}");
    let value = values[0].to_str().unwrap();
    value.strip_prefix("Bearer ").unwrap_or_else(|| panic!("a Bearer credential at the backend: {value}")).to_owned()
}
