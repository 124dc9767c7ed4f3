//! The command line: configuration checks, hashing secrets, printing the API document.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_token-exchange");

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TOKEN_EXCHANGE")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_config_accepts_the_embedded_defaults_and_the_example_file() {
    assert_eq!(run(&["check-config"], &[], "").status.code(), Some(0));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let output = run(&["check-config", "--config", example], &[], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Asserts that `args` with `env` exits 2 and names `key` on standard error.
fn assert_refused_naming(args: &[&str], env: &[(&str, &str)], key: &str) {
    let output = run(args, env, "");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(key), "{}", stderr(&output));
}

#[test]
fn an_invalid_value_exits_2_and_names_the_key() {
    let file = config_file("[tokens]\nttl = \"forever\"\n");

    assert_refused_naming(&["check-config", "--config", file.path().to_str().unwrap()], &[], "tokens.ttl");
}

#[test]
fn an_unknown_key_exits_2_and_names_it() {
    let file = config_file("[server]\ncolour = \"blue\"\n");

    assert_refused_naming(&["check-config", "--config", file.path().to_str().unwrap()], &[], "colour");
}

#[test]
fn environment_variables_override_the_file() {
    let file = config_file("[tokens]\nttl = \"5m\"\n");

    let args = ["check-config", "--config", file.path().to_str().unwrap()];
    assert_refused_naming(&args, &[("TOKEN_EXCHANGE__TOKENS__TTL", "0s")], "tokens.ttl");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_configuration() {
    assert_refused_naming(
        &["serve"],
        &[("TOKEN_EXCHANGE__SERVER__ISSUER", "http://not-https.example")],
        "server.issuer",
    );
}

#[test]
fn a_missing_config_file_exits_2() {
    let output = run(&["check-config", "--config", "/nonexistent/token-exchange.toml"], &[], "");

    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn hash_secret_prints_an_argon2id_hash_of_stdin() {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};

    let output = run(&["hash-secret"], &[], "s3cret\n");

    assert_eq!(output.status.code(), Some(0));
    let hash = String::from_utf8(output.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"));
    let parsed = PasswordHash::new(hash.trim()).unwrap();
    assert!(Argon2::default().verify_password(b"s3cret", &parsed).is_ok());
}

#[test]
fn the_openapi_command_prints_the_generated_document() {
    let output = run(&["openapi"], &[], "");

    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(token_exchange::http::openapi()).unwrap());
}

#[tokio::test]
async fn no_token_secret_or_private_key_reaches_the_log() {
    let idp = crate::helpers::FakeIdp::start().await;
    let data = tempfile::tempdir().unwrap();
    let secret_hash = crate::helpers::secret_hash("LOGGED-CLIENT-SECRET");
    let config = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndatabase_url = \"sqlite://{}/log.db\"\n\
         [[upstreams]]\nname = \"idp\"\nissuer = \"{}\"\naudiences = [\"{}\"]\n\
         [[clients]]\nclient_id = \"gw\"\nsecret_hash = \"{secret_hash}\"\n",
        data.path().display(),
        idp.issuer(),
        crate::helpers::UPSTREAM_AUDIENCE,
    ));
    let server = crate::helpers::ServerProcess::serve(config.path(), &[("RUST_LOG", "debug".to_owned())]);
    let port = server.port;
    let jwt = idp.current_key().sign(&serde_json::json!({"iss": idp.issuer(), "sub": "LOGGED-SUBJECT-JWT"}));
    let http = reqwest::Client::new();
    let token_url = format!("http://127.0.0.1:{port}/token");
    let attempts =
        [("LOGGED-CLIENT-SECRET", "LOGGED-OPAQUE-TOKEN"), ("LOGGED-CLIENT-SECRET", jwt.as_str()), ("wrong", "x")];
    for (secret, subject) in attempts {
        let form = [
            ("grant_type", crate::helpers::TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", crate::helpers::ACCESS_TOKEN),
        ];
        http.post(&token_url).basic_auth("gw", Some(secret)).form(&form).send().await.unwrap();
    }
    http.post(format!("{token_url}?client_secret=LOGGED-QUERY-SECRET")).form(&[("a", "b")]).send().await.unwrap();
    let log = server.stop(false);

    let access_log = ["request completed", "request refused", "request failed"];
    let logged = log.lines().filter(|line| access_log.iter().any(|message| line.contains(message))).count();
    assert_eq!(logged, 4, "each request was logged, once: {log}");
    for secret in ["LOGGED-CLIENT-SECRET", "LOGGED-OPAQUE-TOKEN", "LOGGED-QUERY-SECRET", &jwt[..40], "PRIVATE KEY"] {
        assert!(!log.contains(secret), "{secret} appeared in the log:\n{log}");
    }
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    use std::io::BufRead as _;

    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(BINARY)
        .arg("serve")
        .env("TOKEN_EXCHANGE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TOKEN_EXCHANGE__STORAGE__DATABASE_URL", format!("sqlite://{}/term.db", data.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "server exited before listening");
    }

    let signalled = Command::new("sh").args(["-c", &format!("kill -TERM {}", server.id())]).status().unwrap();

    assert!(signalled.success());
    let pid = server.id();
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || exited.send(server.wait()));
    match exit.recv_timeout(std::time::Duration::from_secs(15)) {
        Ok(status) => {
            let status = status.unwrap();
            assert!(status.success(), "exit status after SIGTERM: {status}");
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("still running 15 s after SIGTERM");
        }
    }
}
