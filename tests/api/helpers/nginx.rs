//! nginx run from a configuration of `tests/proxies/`, as one foreground process.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::e2e::harness::{Proxy, free_port, render};
use crate::helpers::eventually;

/// nginx on a port of its own, killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Renders `tests/proxies/<template>` with `values`, `LISTEN_PORT` (a free port) and
    /// `DIR` (its own folder), starts it, and waits until it listens.
    pub async fn start(template: &str, values: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxies").join(template));
        let mut values = values.to_vec();
        values.extend([("LISTEN_PORT", port.to_string()), ("DIR", dir.path().display().to_string())]);
        std::fs::write(dir.path().join("nginx.conf"), render(&text.unwrap(), &values)).unwrap();
        // The end-to-end tests' command line: one foreground process, logging to standard error.
        let child = Proxy::Nginx.command(dir.path()).spawn().unwrap();
        let nginx = Self { child, port, dir };
        eventually(&format!("nginx ({template}) listens"), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok().then_some(())
        })
        .await;
        nginx
    }

    /// A file of its own folder (where its configuration may log).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
