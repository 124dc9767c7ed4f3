//! Request-level rules that hold for every route.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{HttpMessage as _, HttpResponse, web};

use crate::oauth::OAuthError;
use crate::state::AppState;

/// Headers every response carries: no MIME sniffing, no framing (Swagger UI included), no
/// referrer leaking a path to another site.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Content-Security-Policy", "frame-ancestors 'none'"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}

/// Marks a request [`head_as_get`] turned into a GET, for handlers that report the method.
#[derive(Debug, Clone, Copy)]
pub struct ArrivedAsHead;

/// RFC 9110 §9.3.2: HEAD wherever GET is served. The request is routed as a GET; the HTTP
/// layer remembers it was a HEAD and sends no body.
pub async fn head_as_get(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if request.method() == Method::HEAD {
        request.head_mut().method = Method::GET;
        request.extensions_mut().insert(ArrivedAsHead);
    }
    next.call(request).await
}

/// With `server.metrics_listen`, `/metrics` is served on that listener only, and nothing else is.
pub async fn listener_gate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let metrics_port = request.app_data::<web::Data<AppState>>().and_then(|state| state.metrics_port);
    if let Some(port) = metrics_port {
        let on_metrics_listener = request.app_config().local_addr().port() == port;
        if on_metrics_listener != (request.path() == "/metrics") {
            // Built with the error attached, so the access log reports it like any other.
            let refusal = HttpResponse::from_error(OAuthError::NotFound);
            return Ok(ServiceResponse::new(request.into_parts().0, refusal).map_into_right_body());
        }
    }
    next.call(request).await.map(ServiceResponse::map_into_left_body)
}
