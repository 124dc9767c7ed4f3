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

#[test]
fn an_invalid_value_exits_2_and_names_the_key() {
    let file = config_file("[tokens]\nttl = \"forever\"\n");

    let output = run(&["check-config", "--config", file.path().to_str().unwrap()], &[], "");

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("tokens.ttl"), "{}", stderr(&output));
}

#[test]
fn an_unknown_key_exits_2_and_names_it() {
    let file = config_file("[server]\ncolour = \"blue\"\n");

    let output = run(&["check-config", "--config", file.path().to_str().unwrap()], &[], "");

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("colour"), "{}", stderr(&output));
}

#[test]
fn environment_variables_override_the_file() {
    let file = config_file("[tokens]\nttl = \"5m\"\n");

    let output =
        run(&["check-config", "--config", file.path().to_str().unwrap()], &[("TOKEN_EXCHANGE__TOKENS__TTL", "0s")], "");

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("tokens.ttl"), "{}", stderr(&output));
}

#[test]
fn serve_refuses_to_start_on_an_invalid_configuration() {
    let output = run(&["serve"], &[("TOKEN_EXCHANGE__SERVER__ISSUER", "http://not-https.example")], "");

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("server.issuer"), "{}", stderr(&output));
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
