//! The committed API document is the one the routes generate.

use serde_json::Value;

use crate::helpers::*;

fn generated() -> Value {
    serde_json::to_value(token_exchange::http::openapi()).unwrap()
}

#[test]
fn the_committed_openapi_document_matches_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, token_exchange::http::openapi().to_pretty_json().unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();

    assert!(committed == generated(), "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test openapi`");
}

#[test]
fn the_token_endpoint_documents_every_error_it_can_answer() {
    let document = generated();
    let responses = document["paths"]["/token"]["post"]["responses"].as_object().unwrap();
    for status in ["200", "400", "401", "405", "429", "500", "503"] {
        assert!(responses.contains_key(status), "/token lacks a {status} response");
    }
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let served: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();

    assert_eq!(served, generated());
}

#[test]
fn the_openapi_document_is_valid_openapi_3_1() {
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR")
        .expect("OPENAPI_SPEC_VALIDATOR names openapi-spec-validator; scripts/test installs it");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), token_exchange::http::openapi().to_pretty_json().unwrap()).unwrap();

    let output = std::process::Command::new(validator).arg(file.path()).output().unwrap();

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_documented_token_form_requires_what_the_parser_requires() {
    let document = generated();
    let form = &document["components"]["schemas"]["TokenExchangeForm"];
    let required: Vec<&str> = form["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();

    assert_eq!(required, ["grant_type", "subject_token", "subject_token_type"]);
    assert_eq!(form["dependentRequired"]["actor_token"][0], "actor_token_type", "RFC 8693 §2.1");
    assert_eq!(form["dependentRequired"]["actor_token_type"][0], "actor_token", "RFC 8693 §2.1");
}
