//! A minimal identity provider for the benchmark: RFC 7662 introspection that calls every
//! token active for an hour, and a counter of how often it was asked.
//!
//! `cargo run --release --example fake_idp -- 127.0.0.1:18081`

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpResponse, HttpServer, get, post, web};

static INTROSPECTIONS: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Deserialize)]
struct Introspect {
    token: String,
}

#[post("/introspect")]
async fn introspect(form: web::Form<Introspect>) -> HttpResponse {
    INTROSPECTIONS.fetch_add(1, Ordering::Relaxed);
    let exp = token_exchange::clock::Clock::now(&token_exchange::clock::SystemClock).as_secs() + 3600;
    let sub = format!("user-{}", form.token.len());
    HttpResponse::Ok().json(serde_json::json!({"active": true, "sub": sub, "scope": "read write", "exp": exp}))
}

#[get("/stats")]
async fn stats() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"introspections": INTROSPECTIONS.load(Ordering::Relaxed)}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    HttpServer::new(|| App::new().service(introspect).service(stats)).workers(1).bind(address)?.run().await
}
