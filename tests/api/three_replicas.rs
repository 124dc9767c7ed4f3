//! Three service processes on one Redis Cluster and one PostgreSQL, as a fleet runs them: one upstream
//! call per token, revocations and key rotations seen by all, and a replica killed under load
//! leaving the others answering.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::*;

struct Fleet {
    replicas: Vec<ServerProcess>,
    config: std::path::PathBuf,
    http: reqwest::Client,
    _database: Arc<TestDatabase>,
}

impl Fleet {
    /// Three `token-exchange serve` processes with `idp` as JWT upstream and its introspection
    /// as the opaque one, sharing a fresh PostgreSQL database and a prefix on the Redis Cluster
    /// scripts/test starts (three primaries).
    async fn start(idp: &FakeIdp) -> Self {
        let database = TestDatabase::postgres().await;
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
             [storage]\ndatabase_url = \"{database}\"\n\
             [keys]\nencryption_key_file = \"{kek}\"\nrefresh_interval = \"1s\"\n\
             [upstream_http]\ntimeout = \"2s\"\n\
             [cache]\nredis_cluster_nodes = {nodes:?}\nredis_prefix = \"{prefix}\"\n\
             [[upstreams]]\nname = \"idp\"\nissuer = \"{issuer}\"\naudiences = [\"{UPSTREAM_AUDIENCE}\"]\n\
             jwks_uri = \"{issuer}{JWKS_PATH}\"\n\
             [[upstreams]]\nname = \"opaque\"\nissuer = \"{issuer}/opaque\"\n\
             introspection_endpoint = \"{issuer}{INTROSPECT_PATH}\"\nclient_id = \"{UPSTREAM_CLIENT_ID}\"\n\
             client_secret = \"{UPSTREAM_CLIENT_SECRET}\"\ndefault_for_opaque = true\n\
             [[clients]]\nclient_id = \"{CLIENT_ID}\"\nsecret_hash = \"{hash}\"\n",
            database = database.url(),
            kek = test_kek_file().display(),
            nodes = redis_cluster_nodes(),
            prefix = random_prefix(),
            issuer = idp.issuer(),
            hash = secret_hash(CLIENT_SECRET),
        );
        let config = kept_config_file(&config);
        let replicas = (0..3)
            .map(|_| {
                let mut replica = ServerProcess::serve(&config, &[]);
                replica.drain_output();
                replica
            })
            .collect();
        Self { replicas, config, http: reqwest::Client::new(), _database: database }
    }

    fn url(&self, replica: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.replicas[replica].port)
    }

    async fn exchange_opaque(&self, replica: usize, token: &str) -> reqwest::Response {
        let form = [("grant_type", TOKEN_EXCHANGE), ("subject_token", token), ("subject_token_type", ACCESS_TOKEN)];
        self.http
            .post(self.url(replica, "/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    async fn published_kids(&self, replica: usize) -> Vec<String> {
        let jwks: Value = self.http.get(self.url(replica, JWKS_PATH)).send().await.unwrap().json().await.unwrap();
        let mut kids: Vec<String> =
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        kids.sort();
        kids
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for replica in &mut self.replicas {
            let _ = replica.child.kill();
            let _ = replica.child.wait();
        }
    }
}

async fn introspection_for_every_token(idp: &FakeIdp, delay: Duration) {
    let exp = real_now() + 600;
    let active = json!({"active": true, "sub": "u", "exp": exp});
    idp.introspection_answers_all(ResponseTemplate::new(200).set_delay(delay).set_body_json(active)).await;
}

#[tokio::test]
async fn two_hundred_concurrent_first_exchanges_over_three_replicas_make_one_upstream_call() {
    let idp = FakeIdp::start().await;
    let fleet = Fleet::start(&idp).await;
    introspection_for_every_token(&idp, Duration::from_millis(300)).await;

    let statuses: Vec<u16> = join_all((0..200).map(|i| fleet.exchange_opaque(i % 3, "one-token-for-all")))
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn a_revocation_at_one_replica_is_refused_by_all_three_within_a_second() {
    let idp = FakeIdp::start().await;
    let fleet = Fleet::start(&idp).await;
    introspection_for_every_token(&idp, Duration::ZERO).await;
    for replica in 0..3 {
        assert_eq!(fleet.exchange_opaque(replica, "revoked-soon").await.status(), 200, "cached in every replica");
    }

    let revoked = fleet
        .http
        .post(fleet.url(0, "/revoke"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", "revoked-soon")])
        .send()
        .await
        .unwrap();
    let since = stopwatch();
    assert_eq!(revoked.status(), 200);

    for replica in 0..3 {
        loop {
            if fleet.exchange_opaque(replica, "revoked-soon").await.status() == 400 {
                break;
            }
            assert!(since.elapsed() < Duration::from_secs(1), "replica {replica} still accepts the revoked token");
            pause(Duration::from_millis(20)).await;
        }
    }
    assert!(since.elapsed() < Duration::from_secs(1));
}

#[expect(clippy::disallowed_methods, reason = "measures real propagation time; the processes run on the real clock")]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

#[tokio::test]
async fn a_key_rotation_is_seen_identically_in_all_three_jwks() {
    let idp = FakeIdp::start().await;
    let fleet = Fleet::start(&idp).await;
    let before = fleet.published_kids(0).await;
    for replica in 1..3 {
        assert_eq!(fleet.published_kids(replica).await, before);
    }

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_token-exchange"))
        .args(["rotate-key", "--config", fleet.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));

    let after = eventually("every replica publishes the new key", async || {
        let sets = join_all((0..3).map(|r| fleet.published_kids(r))).await;
        (sets[0].len() == before.len() + 1 && sets.iter().all(|s| *s == sets[0])).then(|| sets[0].clone())
    })
    .await;
    assert!(before.iter().all(|kid| after.contains(kid)), "the old key stays published");
}

#[tokio::test]
async fn one_replica_killed_under_load_leaves_the_other_two_answering_correctly() {
    let idp = FakeIdp::start().await;
    let fleet = Fleet::start(&idp).await;
    let victim = fleet.replicas[0].child.id().to_string();
    introspection_for_every_token(&idp, Duration::from_millis(5)).await;
    let load = async {
        let mut statuses = Vec::new();
        for round in 0..40 {
            let tokens: Vec<String> = (0..10).map(|i| format!("load-{round}-{i}")).collect();
            let answers = join_all(tokens.iter().enumerate().map(|(i, t)| fleet.exchange_opaque(1 + i % 2, t))).await;
            statuses.extend(answers.iter().map(|r| r.status().as_u16()));
        }
        statuses
    };
    let kill = async {
        pause(Duration::from_millis(100)).await;
        let killed = std::process::Command::new("kill").args(["-9", &victim]).status().unwrap();
        assert!(killed.success());
    };

    let (statuses, ()) = tokio::join!(load, kill);

    assert_eq!(statuses.len(), 400);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[expect(clippy::disallowed_methods, reason = "paces real processes")]
async fn pause(duration: Duration) {
    tokio::time::sleep(duration).await;
}
