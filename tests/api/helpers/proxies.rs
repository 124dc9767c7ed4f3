//! Real proxies run from a configuration of `tests/proxies/`, each as one foreground process:
//! nginx and Envoy, as the end-to-end harness runs them.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::e2e::harness::{Proxy, free_port, render};
use crate::helpers::{FakeIdp, INTROSPECT_PATH, eventually, required_env};

/// A proxy on a port of its own, killed on drop.
pub struct ProxyProcess {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// nginx from `tests/proxies/<template>`.
    pub async fn nginx(template: &str, values: &[(&str, String)]) -> Self {
        Self::start(Proxy::Nginx, template, values).await
    }

    /// Envoy from `tests/proxies/<template>`.
    pub async fn envoy(template: &str, values: &[(&str, String)]) -> Self {
        Self::start(Proxy::EnvoyHttp, template, values).await
    }

    /// Renders `template` with `values`, `LISTEN_PORT` (a free port) and `DIR` (its own
    /// folder) into the file that `proxy`'s command line reads, starts it, and waits until it
    /// listens.
    async fn start(proxy: Proxy, template: &str, values: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxies").join(template));
        let mut values = values.to_vec();
        values.extend([("LISTEN_PORT", port.to_string()), ("DIR", dir.path().display().to_string())]);
        std::fs::write(dir.path().join(proxy.main_config()), render(&text.unwrap(), &values)).unwrap();
        let child = proxy.command(dir.path()).spawn().unwrap();
        let process = Self { child, port, dir };
        eventually(&format!("{template} listens"), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok().then_some(())
        })
        .await;
        process
    }

    /// A file of its own folder (where its configuration may log).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx as the HTTPS front of `idp` (tests/proxies/nginx-tls-front.conf), with the
/// certificate `scripts/test` makes (`TEST_TLS_SERVER_CERT`, signed by `TEST_TLS_CA`).
pub async fn https_front(idp: &FakeIdp) -> ProxyProcess {
    let idp_port = idp.issuer().rsplit(':').next().unwrap().to_owned();
    let values = [
        ("CERT", required_env("TEST_TLS_SERVER_CERT")),
        ("KEY", required_env("TEST_TLS_SERVER_KEY")),
        ("IDP_PORT", idp_port),
    ];
    ProxyProcess::nginx("nginx-tls-front.conf", &values).await
}

/// The introspection endpoint of `idp` at its HTTPS front.
pub fn https_introspection(front: &ProxyProcess) -> String {
    format!("https://127.0.0.1:{}{INTROSPECT_PATH}", front.port)
}
