//! The service's own binary, started as a real process (signals, the log, trace export).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// A `token-exchange serve` process, its port, and what it has logged so far.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub log: String,
    /// `None` once the output is drained in the background (see [`Self::drain_output`]).
    stdout: Option<BufReader<ChildStdout>>,
}

impl ServerProcess {
    /// Runs `token-exchange serve --config FILE` with `env`, and waits until it says which port
    /// it listens on (its JSON log line carries `port`).
    pub fn serve(config: &std::path::Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_token-exchange"));
        command.args(["serve", "--config", config.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.envs(env.iter().map(|(name, value)| (*name, value.as_str())));
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut log = String::new();
        let port = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the server exited early: {log}");
            log.push_str(&line);
            let listening = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|l| l["port"].as_u64());
            if let Some(port) = listening {
                break u16::try_from(port).unwrap();
            }
        };
        Self { child, port, log, stdout: Some(stdout) }
    }

    /// Sends `signal` (a `kill` name such as `TERM` or `HUP`).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("sh").args(["-c", &format!("kill -{signal} {}", self.child.id())]).status().unwrap();
        assert!(sent.success(), "kill -{signal}");
    }

    /// Reads and drops what the process writes from now on, so that a busy server never
    /// blocks on a full pipe; [`Self::stop`] then returns only what was logged before.
    pub fn drain_output(&mut self) {
        if let Some(mut stdout) = self.stdout.take() {
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        }
    }

    /// Stops the process (SIGKILL when `graceful` is false) and returns everything it wrote,
    /// standard output then standard error.
    pub fn stop(mut self, graceful: bool) -> String {
        if graceful {
            self.signal("TERM");
        } else {
            self.child.kill().unwrap();
        }
        if let Some(stdout) = &mut self.stdout {
            stdout.read_to_string(&mut self.log).unwrap();
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut self.log).unwrap();
        }
        self.child.wait().unwrap();
        self.log
    }
}

/// `toml` in a configuration file that outlives the test's handles, so a process can be
/// started from it again.
pub fn kept_config_file(toml: &str) -> std::path::PathBuf {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    file.keep().unwrap().1
}

/// The wall clock, which a server process runs on (test apps run on a fixed one).
#[expect(clippy::disallowed_methods, reason = "a server process runs on the real clock")]
pub fn real_now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// `token-exchange check-config --online`, run as the real binary on a configuration file
/// whose only upstream is `upstream` (the TOML of one `[[upstreams]]` entry).
pub async fn check_config_online(upstream: &str) -> Output {
    let text = format!("[[upstreams]]\n{upstream}");
    tokio::task::spawn_blocking(move || {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_token-exchange"));
        command.args(["check-config", "--online", "--config", file.path().to_str().unwrap()]);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TOKEN_EXCHANGE")) {
            command.env_remove(name);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}
