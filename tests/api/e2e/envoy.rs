//! Envoy's ext_authz filter, with an HTTP authorization service below `/forward-auth`
//! (examples/envoy/http.yaml) and with the gRPC service (examples/envoy/grpc.yaml).

mod http {
    use super::super::harness::Proxy;

    gateway_behaviours!(Proxy::EnvoyHttp);
}

mod grpc {
    use super::super::harness::Proxy;

    gateway_behaviours!(Proxy::EnvoyGrpc);
}
