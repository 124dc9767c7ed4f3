//! The harness keeps its promises: what a test creates is gone after it, and its apps' time
//! moves only when the test moves it.

use std::time::Duration;

use sqlx::Connection as _;

use crate::helpers::*;

async fn database_exists(name: &str) -> bool {
    let mut connection = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    count == 1
}

#[tokio::test]
async fn a_postgres_database_lives_as_long_as_the_apps_using_it() {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp).with_postgres().spawn().await;
    let second = TestApp::builder(&idp).with_database(first.database()).spawn().await;
    let name = first.database_url().rsplit('/').next().unwrap().to_owned();
    assert!(database_exists(&name).await, "created for the test");

    drop(first);
    assert!(database_exists(&name).await, "still used by the second app");
    drop(second);

    assert!(!database_exists(&name).await, "dropped with the last app using it");
}

#[tokio::test]
async fn an_apps_clock_moves_only_when_the_test_moves_it() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let before = app.now();
    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);
    assert_eq!(app.now(), before);
    app.clock.advance(Duration::from_secs(90));

    assert_eq!(app.now(), start_time() + 90);
}
