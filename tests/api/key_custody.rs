//! Private keys at rest: sealed under a key-encryption key (KEK), useless from a database dump,
//! refused with the wrong KEK, migrated from plain text, re-sealed by `rekey` while serving.

use std::process::Command;
use std::sync::Arc;

use token_exchange::clock::FixedClock;
use token_exchange::config::StorageSettings;
use token_exchange::keys::{KeyStore, SigningAlgorithm, SigningKey};
use token_exchange::startup::Application;

use crate::helpers::*;

fn kek_file(folder: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let path = folder.path().join(name);
    token_exchange::keys::read_or_create_kek(&path).unwrap();
    path
}

async fn raw_store(database_url: &str) -> Arc<dyn KeyStore> {
    let settings = StorageSettings { database_url: database_url.into(), max_connections: 1 };
    token_exchange::storage::Database::open(&settings).await.unwrap().key_store()
}

#[tokio::test]
async fn a_stolen_key_row_is_ciphertext_useless_without_the_kek() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let rows = raw_store(app.database_url()).await.load_all().await.unwrap();

    assert_eq!(rows.len(), 1);
    let stored = &rows[0].private_key_pkcs8;
    assert!(stored.starts_with(b"TXK1"), "sealed at rest");
    assert!(SigningKey::from_pkcs8(SigningAlgorithm::ES256, stored).is_err(), "not a usable key");
    let kek =
        std::path::Path::new(app.database_url().trim_start_matches("sqlite://")).with_file_name("token-exchange.kek");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kek).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the generated KEK beside the database is private");
}

#[tokio::test]
async fn a_restart_with_the_wrong_kek_fails_closed_and_generates_no_key_over_the_stored_ones() {
    let idp = FakeIdp::start().await;
    let keks = tempfile::tempdir().unwrap();
    let right = kek_file(&keks, "right.kek");
    let first = TestApp::builder(&idp).configure(|s| s.keys.encryption_key_file = Some(right.clone())).spawn().await;
    let before = raw_store(first.database_url()).await.load_all().await.unwrap();

    let mut settings = first.settings.clone();
    settings.keys.encryption_key_file = Some(kek_file(&keks, "wrong.kek"));
    let refused = Application::build_with_clock(settings, Arc::new(FixedClock::at(start_time()))).await.err().unwrap();

    assert!(format!("{refused:#}").contains("key-encryption key"), "{refused:#}");
    let after = raw_store(first.database_url()).await.load_all().await.unwrap();
    assert_eq!(after.iter().map(|k| &k.kid).collect::<Vec<_>>(), before.iter().map(|k| &k.kid).collect::<Vec<_>>());
}

#[test]
fn the_server_exits_2_when_the_kek_does_not_open_the_stored_keys() {
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/custody.db", data.path().display());
    let run = |kek: &str| {
        Command::new(env!("CARGO_BIN_EXE_token-exchange"))
            .arg("rotate-key")
            .env("TOKEN_EXCHANGE__STORAGE__DATABASE_URL", &database)
            .env("TOKEN_EXCHANGE_KEK", kek)
            .output()
            .unwrap()
    };
    let right = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let wrong = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo";
    assert!(run(right).status.success());

    let refused = run(wrong);

    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("key-encryption key"));
}

#[tokio::test]
async fn plain_text_keys_of_an_older_version_are_sealed_on_the_first_start_with_a_kek() {
    let idp = FakeIdp::start().await;
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/old.db", data.path().display());
    let pkcs8 = SigningKey::generate_pkcs8(SigningAlgorithm::ES256).unwrap();
    let kid = SigningKey::from_pkcs8(SigningAlgorithm::ES256, &pkcs8).unwrap().kid().to_owned();
    let old = token_exchange::keys::StoredKey {
        kid: kid.clone(),
        algorithm: "ES256".into(),
        private_key_pkcs8: pkcs8.clone(),
        created_at: token_exchange::clock::UnixTime::from_secs(start_time() - 60),
        activates_at: token_exchange::clock::UnixTime::from_secs(start_time() - 60),
        retires_at: None,
    };
    assert!(raw_store(&database).await.insert(&old, None).await.unwrap());

    let template = spawn_app(&idp).await;
    let mut settings = template.settings.clone();
    settings.storage.database_url = database.clone();
    let app = Application::build_with_clock(settings, Arc::new(FixedClock::at(start_time()))).await.unwrap();
    let jwks_url = format!("http://127.0.0.1:{}{JWKS_PATH}", app.port());
    tokio::spawn(app.run_until_stopped());

    let rows = raw_store(&database).await.load_all().await.unwrap();
    assert!(rows[0].private_key_pkcs8.starts_with(b"TXK1"), "sealed in place");
    assert_ne!(rows[0].private_key_pkcs8, pkcs8);
    let jwks: serde_json::Value = reqwest::get(jwks_url).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str(), "still the same key, opened from its sealed row");
}

#[tokio::test]
async fn rekey_reseals_every_key_while_two_replicas_keep_answering() {
    let idp = FakeIdp::start().await;
    let keks = tempfile::tempdir().unwrap();
    let (old, new) = (kek_file(&keks, "old.kek"), kek_file(&keks, "new.kek"));
    let first = TestApp::builder(&idp)
        .with_postgres()
        .configure(|s| s.keys.encryption_key_file = Some(old.clone()))
        .spawn()
        .await;
    let second = TestApp::builder(&idp)
        .with_database(first.database())
        .configure(|s| s.keys.encryption_key_file = Some(old.clone()))
        .spawn()
        .await;
    let token = idp.token(first.now());
    let load = async |app: &TestApp| {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(app.exchange(&token, &[("scope", "read")]).await.status().as_u16());
        }
        statuses
    };

    let rekey = tokio::task::spawn_blocking({
        let (database, old, new) = (first.database_url().to_owned(), old.clone(), new.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_token-exchange"))
                .args(["rekey", "--old-key-file", old.to_str().unwrap()])
                .env("TOKEN_EXCHANGE__STORAGE__DATABASE_URL", database)
                .env("TOKEN_EXCHANGE__KEYS__ENCRYPTION_KEY_FILE", new)
                .output()
                .unwrap()
        }
    });
    let (first_statuses, second_statuses) = tokio::join!(load(&first), load(&second));
    let rekeyed = rekey.await.unwrap();

    assert!(rekeyed.status.success(), "{}", String::from_utf8_lossy(&rekeyed.stderr));
    assert!(
        String::from_utf8_lossy(&rekeyed.stdout).contains("re-sealed 1"),
        "{}",
        String::from_utf8_lossy(&rekeyed.stdout)
    );
    assert!(first_statuses.iter().chain(&second_statuses).all(|s| *s == 200), "{first_statuses:?} {second_statuses:?}");
    let under_new = TestApp::builder(&idp)
        .with_database(first.database())
        .configure(|s| s.keys.encryption_key_file = Some(new.clone()))
        .spawn()
        .await;
    assert_eq!(under_new.jwks().await, first.jwks().await, "a replica with the new KEK opens the same keys");
    let mut with_old = first.settings.clone();
    with_old.keys.encryption_key_file = Some(old.clone());
    let refused = Application::build_with_clock(with_old, Arc::new(FixedClock::at(start_time()))).await;
    assert!(refused.is_err(), "the old KEK no longer opens them");
}
