//! `token-exchange demo`: the commands it prints, pasted in order into one shell, do what they
//! say; and it refuses to listen anywhere but on loopback.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_token-exchange");
/// How long the demo may take to start, and each step to answer.
const PATIENCE: Duration = Duration::from_secs(60);
/// What the test's shell prints after each step, with the step's exit status.
const DONE: &str = "@@step-done";

/// A child process whose output arrives line by line on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (sender, lines) = channel();
        forward(child.stdout.take().unwrap(), sender.clone());
        forward(child.stderr.take().unwrap(), sender);
        Self { child, lines }
    }

    fn next_line(&self, waiting_for: &str) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|error| panic!("no line of {waiting_for} within {PATIENCE:?}: {error}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(output: impl Read + Send + 'static, lines: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
}

/// `token-exchange demo ARGS` in `dir`, with none of the caller's TOKEN_EXCHANGE variables.
fn demo_command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.arg("demo").args(args).current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TOKEN_EXCHANGE")) {
        command.env_remove(name);
    }
    command
}

/// The numbered steps the demo prints between "Paste these…" and the closing rule.
fn printed_steps(demo: &Running) -> Vec<String> {
    let mut seen = String::new();
    loop {
        let line = demo.next_line("the demo's banner");
        if line.starts_with(" Paste these") {
            break;
        }
        seen.push_str(&line);
        seen.push('\n');
        assert!(!line.starts_with("error:"), "the demo did not start:\n{seen}");
    }
    let mut printed = Vec::new();
    loop {
        let line = demo.next_line("the printed commands");
        if line.starts_with("=====") {
            break;
        }
        printed.push(line);
    }
    let printed = printed.join("\n");
    let steps: Vec<String> =
        printed.split("\n\n").map(str::trim).filter(|block| block.starts_with("# ")).map(str::to_owned).collect();
    for (i, step) in steps.iter().enumerate() {
        assert!(step.starts_with(&format!("# {}.", i + 1)), "steps are numbered in order:\n{printed}");
    }
    steps
}

/// One bash, as a user's terminal: steps are pasted into it in turn, so variables carry over.
struct Shell {
    running: Running,
    stdin: ChildStdin,
}

impl Shell {
    fn start(curl_home: &std::path::Path) -> Self {
        // A hanging curl fails its step instead of the whole test run.
        std::fs::write(curl_home.join(".curlrc"), "max-time = 20\n").unwrap();
        let mut command = Command::new("bash");
        command.args(["--noprofile", "--norc"]).env("CURL_HOME", curl_home).stdin(Stdio::piped());
        let mut running = Running::spawn(&mut command);
        let mut stdin = running.child.stdin.take().unwrap();
        writeln!(stdin, "exec 2>&1").unwrap();
        Self { running, stdin }
    }

    /// Runs `step` and returns what it printed and its exit status.
    fn paste(&mut self, step: &str) -> (String, i32) {
        writeln!(self.stdin, "{step}\nprintf '\\n{DONE} %s\\n' \"$?\"").unwrap();
        self.stdin.flush().unwrap();
        let mut output = String::new();
        loop {
            let line = self.running.next_line(step);
            if let Some(status) = line.strip_prefix(DONE) {
                return (output, status.trim().parse().unwrap());
            }
            output.push_str(&line);
            output.push('\n');
        }
    }
}

/// `"name":"value"` in a JSON text: the value.
fn json_string<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
    text[start..].split('"').next()
}

#[test]
fn the_printed_commands_walk_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let demo =
        Running::spawn(&mut demo_command(dir.path(), &["--listen", "127.0.0.1:0", "--idp-listen", "127.0.0.1:0"]));
    let steps = printed_steps(&demo);
    assert_eq!(steps.len(), 6, "{steps:#?}");
    let mut shell = Shell::start(dir.path());
    let mut run = |number: usize| {
        let (output, status) = shell.paste(&steps[number - 1]);
        assert_eq!(status, 0, "step {number} failed:\n{}\n---\n{output}", steps[number - 1]);
        output
    };

    // 1. A demo user's tokens: an opaque one and a JWT.
    let tokens = run(1);
    let lines: Vec<&str> = tokens.lines().collect();
    assert!(lines[0].starts_with("demo_opaque_"), "an opaque demo token: {tokens}");
    assert!(lines[1].starts_with("eyJ") && lines[1].matches('.').count() == 2, "a JWT: {tokens}");

    // 2. Both are exchanged at /token.
    let exchanged = run(2);
    assert_eq!(exchanged.matches(r#""access_token":"eyJ"#).count(), 2, "two exchanges: {exchanged}");
    assert_eq!(
        exchanged.matches(r#""issued_token_type":"urn:ietf:params:oauth:token-type:access_token""#).count(),
        2,
        "{exchanged}"
    );

    // 3. /forward-auth allows the request and hands the gateway an internal token.
    let decision = run(3);
    assert!(decision.starts_with("HTTP/1.1 200"), "{decision}");
    assert!(decision.to_ascii_lowercase().contains("\nauthorization: bearer eyj"), "{decision}");

    // 4. The minted JWT verifies against our JWKS, with the key the JWKS publishes.
    let verified = run(4);
    let kid = json_string(&verified, "kid").unwrap_or_else(|| panic!("the JWKS was shown: {verified}"));
    assert!(verified.contains(&format!("valid: signature by key {kid} (ES256)")), "{verified}");
    assert!(verified.contains(r#""sub": "demo-user""#), "the claims are shown: {verified}");

    // 5. Revocation answers 200, and the token is refused afterwards.
    let revoked = run(5);
    assert!(revoked.contains("revoke: HTTP 200"), "{revoked}");
    assert_eq!(json_string(&revoked, "error"), Some("invalid_request"), "{revoked}");
    assert!(revoked.contains("revoked"), "the refusal says why: {revoked}");

    // 6. /metrics shows the in-process cache hit of step 3.
    let metrics = run(6);
    let hits = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"token_exchange_cache_lookups_total{tier="l1",result="hit"} "#))
        .unwrap_or_else(|| panic!("an l1 hit series: {metrics}"));
    assert!(hits.trim().parse::<f64>().unwrap() >= 1.0, "{metrics}");

    drop(shell);
    drop(demo);
}

#[test]
fn the_demo_refuses_to_listen_beyond_loopback() {
    for args in [["--listen", "0.0.0.0:0"], ["--idp-listen", "192.0.2.1:8081"]] {
        let dir = tempfile::tempdir().unwrap();

        let output = demo_command(dir.path(), &args).output().unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]) && stderr.contains("loopback only"), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "nothing was started or printed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no database was created");
    }
}
