//! The HTTP surface under attack: slow bodies, the database file on disk, who may read
//! `/metrics`, the headers every response carries, HEAD (RFC 9110 §9.3.2) and secrets in the URI.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;

// A raw HTTP/1.1 client, for what reqwest hides: a body that never arrives, a closed
// connection, the bytes after a HEAD response's headers.

/// Headers announcing a 60,000-byte form body, followed by only 1,000 bytes of it.
const SLOW_REQUEST_HEAD: &str = "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n";

/// What came back on a connection: every byte read, and whether the server closed it.
struct RawAnswer {
    bytes: Vec<u8>,
    closed: bool,
}

impl RawAnswer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn status(&self) -> u16 {
        let text = self.text();
        let status_line = text.lines().next().unwrap_or_default().to_owned();
        let code = status_line.split(' ').nth(1).unwrap_or_default();
        code.parse().unwrap_or_else(|_| panic!("no HTTP status line in {text:?}"))
    }

    /// Everything after the header block.
    fn body(&self) -> &[u8] {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete header block");
        &self.bytes[end + 4..]
    }
}

fn socket_address(app: &TestApp) -> &str {
    app.address.strip_prefix("http://").unwrap()
}

/// Opens a connection and sends the headers of a 60,000-byte body and its first 1,000 bytes.
async fn start_slow_body(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(SLOW_REQUEST_HEAD.as_bytes()).await.unwrap();
    stream.write_all(&[b'a'; 1000]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Reads until the server closes the connection, or `within` has passed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> RawAnswer {
    let mut bytes = Vec::new();
    let reading = async {
        let mut chunk = [0_u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return true,
                Ok(read) => bytes.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(error) => panic!("reading the answer failed: {error}"),
            }
        }
    };
    let closed = tokio::time::timeout(within, reading).await.unwrap_or(false);
    RawAnswer { bytes, closed }
}

/// Sends `request` as written and reads the answer until the server closes the connection.
async fn raw_exchange(address: &str, request: &str) -> RawAnswer {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.closed, "the server did not close after `Connection: close`: {}", answer.text());
    answer
}

fn assert_body_timeout(answer: &RawAnswer) {
    assert!(!answer.bytes.is_empty(), "no answer within the bound");
    assert_eq!(answer.status(), 408, "answer: {}", answer.text());
    let body: Value = serde_json::from_slice(answer.body()).unwrap();
    assert_eq!(body["error"], "invalid_request", "answer: {}", answer.text());
    assert!(answer.closed, "the connection is still open after the 408");
}

fn with_body_read_timeout(seconds: u64) -> impl FnOnce(&mut token_exchange::config::Settings) {
    move |s| s.server.body_read_timeout = Duration::from_secs(seconds)
}

// Finding 8: slow request bodies.

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_read_timeout_is_408_and_the_connection_is_closed() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(with_body_read_timeout(1)).spawn().await;
    let mut stream = start_slow_body(socket_address(&app)).await;

    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;

    assert_body_timeout(&answer);
}

#[tokio::test]
async fn fifty_slow_bodies_are_each_answered_408_and_closed() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp).configure(with_body_read_timeout(1)).spawn().await;
    let address = socket_address(&app);
    let mut streams = futures_util::future::join_all((0..50).map(|_| start_slow_body(address))).await;

    let answers = futures_util::future::join_all(
        streams.iter_mut().map(|stream| read_until_closed(stream, Duration::from_secs(10))),
    )
    .await;

    for answer in &answers {
        assert_body_timeout(answer);
    }
}

#[tokio::test]
async fn a_worker_holds_no_more_connections_than_max_connections_per_worker() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(with_body_read_timeout(3))
        .configure(|s| s.server.max_connections_per_worker = 2)
        .spawn()
        .await;
    let address = socket_address(&app);
    let mut slow = [start_slow_body(address).await, start_slow_body(address).await];
    let mut waiting = TcpStream::connect(address).await.unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();

    let while_full = read_until_closed(&mut waiting, Duration::from_secs(1)).await;
    assert!(while_full.bytes.is_empty(), "served beyond the limit: {}", while_full.text());
    for stream in &mut slow {
        assert_body_timeout(&read_until_closed(stream, Duration::from_secs(10)).await);
    }
    let once_free = read_until_closed(&mut waiting, Duration::from_secs(10)).await;

    assert_eq!(once_free.status(), 200, "served once a connection was free: {}", once_free.text());
}

// Finding 9: the SQLite database holds our signing keys.

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn assert_private_database(file: &Path) {
    assert_eq!(mode(file), 0o600, "{}", file.display());
    for journal in ["-wal", "-shm"] {
        let journal = with_suffix(file, journal);
        assert_eq!(mode(&journal), 0o600, "{}", journal.display());
    }
}

#[tokio::test]
async fn the_sqlite_folder_the_service_creates_and_the_database_in_it_are_private() {
    let idp = FakeIdp::start().await;
    let temporary = tempfile::tempdir().unwrap();
    let folder = temporary.path().join("state");
    let file = folder.join("keys.db");
    let database = TestDatabase::Sqlite { url: format!("sqlite://{}", file.display()), _folder: temporary };

    let _app = TestApp::builder(&idp).with_database(Arc::new(database)).spawn().await;

    assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    assert_private_database(&file);
}

#[tokio::test]
async fn an_existing_world_readable_database_is_made_private_on_start() {
    let idp = FakeIdp::start().await;
    let earlier = spawn_app(&idp).await;
    let file = PathBuf::from(earlier.database_url().strip_prefix("sqlite://").unwrap());
    // As an earlier version left them.
    for path in [file.clone(), with_suffix(&file, "-wal"), with_suffix(&file, "-shm")] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let _restarted = TestApp::builder(&idp).with_database(earlier.database()).spawn().await;

    assert_private_database(&file);
}

// Finding 10: /metrics names client ids.

#[tokio::test]
async fn with_a_metrics_listener_metrics_are_served_there_and_only_there() {
    let idp = FakeIdp::start().await;
    let app = TestApp::builder(&idp)
        .configure(|s| s.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))
        .spawn()
        .await;
    assert_eq!(app.exchange(&idp.token(app.now()), &[]).await.status(), 200);

    let on_main_port = app.http.get(app.url("/metrics")).send().await.unwrap();
    let on_metrics_port = app.http.get(app.metrics_url("/metrics")).send().await.unwrap();

    assert_oauth_error(on_main_port, 404, "invalid_request").await;
    assert_eq!(on_metrics_port.status(), 200);
    let text = on_metrics_port.text().await.unwrap();
    assert!(text.contains(&format!("client=\"{CLIENT_ID}\"")), "the exchange was counted: {text}");
    for path in ["/healthz", "/readyz", JWKS_PATH, "/swagger-ui/", "/.well-known/oauth-authorization-server"] {
        let response = app.http.get(app.metrics_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "GET {path} on the metrics port");
    }
    let token = app
        .http
        .post(app.metrics_url("/token"))
        .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(exchange_form(&idp.token(app.now())))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 404, "POST /token on the metrics port");
}

// Finding 11: headers on every response, HEAD, secrets in the URI.

fn exchange_form(subject: &str) -> String {
    serde_html_form::to_string([
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", JWT),
    ])
    .unwrap()
}

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(value("x-content-type-options").as_deref(), Some("nosniff"), "{what}");
    assert_eq!(value("content-security-policy").as_deref(), Some("frame-ancestors 'none'"), "{what}");
    assert_eq!(value("referrer-policy").as_deref(), Some("no-referrer"), "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    let token_error = app.exchange("not-a-token", &[]).await;
    let unauthenticated = app.http.post(app.url("/token")).send().await.unwrap();
    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    let swagger = app.http.get(app.url("/swagger-ui/")).send().await.unwrap();
    let jwks = app.http.get(app.url(JWKS_PATH)).send().await.unwrap();
    let missing = app.http.get(app.url("/no-such-endpoint")).send().await.unwrap();

    assert_eq!(token_error.status(), 400);
    assert_security_headers(&token_error, "a /token error");
    assert_security_headers(&unauthenticated, "an unauthenticated /token request");
    assert_eq!(healthz.status(), 200);
    assert_security_headers(&healthz, "/healthz");
    assert_eq!(swagger.status(), 200);
    assert_security_headers(&swagger, "the Swagger UI");
    assert_eq!(jwks.status(), 200);
    assert_security_headers(&jwks, "the JWKS");
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing, "a 404");
}

#[tokio::test]
async fn head_is_answered_wherever_get_is_with_an_empty_body() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;

    for path in ["/healthz", JWKS_PATH, "/readyz", "/metrics", "/.well-known/oauth-authorization-server"] {
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(socket_address(&app), &request).await;

        assert_eq!(answer.status(), 200, "HEAD {path}: {}", answer.text());
        assert!(answer.body().is_empty(), "HEAD {path} sent a body: {}", answer.text());
    }
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused_whatever_their_case() {
    let idp = FakeIdp::start().await;
    let app = spawn_app(&idp).await;
    let subject = idp.token(app.now());
    let post = |path: &str| {
        app.http
            .post(app.url(path))
            .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(exchange_form(&subject))
    };

    assert_eq!(post("/token").send().await.unwrap().status(), 200, "the same request without a query");
    for query in ["Client_Secret=x", "SUBJECT_TOKEN=x", "client_secret=x", "Actor_Token=x"] {
        let response = post(&format!("/token?{query}")).send().await.unwrap();
        assert_oauth_error(response, 400, "invalid_request").await;
    }
    let revoke = app
        .http
        .post(app.url("/revoke?Token=x"))
        .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_html_form::to_string([("token", subject.as_str())]).unwrap())
        .send()
        .await
        .unwrap();
    assert_oauth_error(revoke, 400, "invalid_request").await;
}
