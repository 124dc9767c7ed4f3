//! OpenTelemetry traces: the release-like binary exports over OTLP/gRPC to a collector running
//! in this test, which scans every exported attribute for secrets.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use crate::helpers::*;

/// An OTLP collector that keeps what it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start(&self) -> u16 {
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = incoming.local_addr().unwrap().port();
        let server =
            tonic::transport::Server::builder().serve_with_incoming(TraceServiceServer::new(self.clone()), incoming);
        tokio::spawn(server);
        port
    }

    fn spans(&self) -> Vec<Span> {
        let requests = self.0.lock().unwrap();
        let resource_spans = requests.iter().flat_map(|r| &r.resource_spans);
        resource_spans.flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect()
    }

    /// Every attribute value anywhere in what was exported: resources, spans, span events.
    fn attribute_values(&self) -> Vec<String> {
        let requests = self.0.lock().unwrap();
        let mut values = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let resource = resource_spans.resource.iter().flat_map(|r| &r.attributes);
            let spans = resource_spans.scope_spans.iter().flat_map(|s| &s.spans);
            let span_attributes =
                spans.clone().flat_map(|s| s.attributes.iter().chain(s.events.iter().flat_map(|e| &e.attributes)));
            let names = spans.map(|s| s.name.clone());
            values.extend(resource.chain(span_attributes).map(text_of));
            values.extend(names);
        }
        values
    }
}

fn text_of(attribute: &KeyValue) -> String {
    let value = attribute.value.as_ref().and_then(|AnyValue { value }| value.as_ref());
    let text = match value {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    format!("{}={text}", attribute.key)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.as_str()),
        _ => None,
    })
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn an_exchange_is_one_trace_of_spans_without_secrets_joined_to_the_gateways_trace() {
    let collector = Collector::default();
    let collector_port = collector.start().await;
    let idp = FakeIdp::start().await;
    let data = tempfile::tempdir().unwrap();
    let secret = "TRACED-CLIENT-SECRET";
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndatabase_url = \"sqlite://{}/traces.db\"\n\
             [tokens]\nclaims = [\"email\"]\n\
             [[upstreams]]\nname = \"idp\"\nissuer = \"{}\"\naudiences = [\"{UPSTREAM_AUDIENCE}\"]\n\
             jwks_uri = \"{}{JWKS_PATH}\"\n\
             [[clients]]\nclient_id = \"gw\"\nsecret_hash = \"{}\"\n",
            data.path().display(),
            idp.issuer(),
            idp.issuer(),
            secret_hash(secret),
        ),
    )
    .unwrap();
    let server = ServerProcess::serve(
        config.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{collector_port}")),
            ("OTEL_SERVICE_NAME", "token-exchange-under-test".to_owned()),
        ],
    );
    let port = server.port;
    let subject = idp.token_with(
        real_now(),
        json!({"sub": "TRACED-SUBJECT", "email": "traced-person@example.com", "exp": real_now() + 600, "iat": real_now()}),
    );

    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/token"))
        .basic_auth("gw", Some(secret))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .form(&[("grant_type", TOKEN_EXCHANGE), ("subject_token", subject.as_str()), ("subject_token_type", JWT)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let minted = response.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let log = tokio::task::spawn_blocking(move || server.stop(true)).await.unwrap();

    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in ["HTTP request", "client_authentication", "exchange", "resolve", "upstream_call", "sign"] {
        assert!(names.contains(&expected), "no {expected} span in {names:?}");
    }
    let trace_id =
        TRACE_ID.as_bytes().chunks(2).map(|hex| u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
    let trace_id: Vec<u8> = trace_id.collect();
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "every span joins the gateway's trace");
    let resolve = spans.iter().find(|s| s.name == "resolve").unwrap();
    assert_eq!(attribute(resolve, "tier"), Some("upstream"), "the tier that answered");
    let jwks_fetch = idp.server.received_requests().await.unwrap();
    let traceparent = jwks_fetch.iter().find_map(|r| r.headers.get("traceparent")).expect("traceparent sent upstream");
    assert!(traceparent.to_str().unwrap().contains(TRACE_ID), "the upstream call continues the trace");
    assert!(log.contains(&format!("\"trace_id\":\"{TRACE_ID}\"")), "log lines carry the trace id: {log}");
    let exported = collector.attribute_values().join("\n");
    for secret in [secret, &subject[..40], &minted[..40], "TRACED-SUBJECT", "traced-person@example.com", "PRIVATE KEY"]
    {
        assert!(!exported.contains(secret), "{secret} was exported:\n{exported}");
    }
}
