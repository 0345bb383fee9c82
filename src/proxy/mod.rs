//! The request path as a tower `Service`: `forward` runs the phases in order, one module each,
//! and records what each found in the `Exchange`; `rescue` turns any refusal into the answer;
//! `logging` writes the record when the response body is done.

pub mod conn;
pub mod headers;
pub mod logging;
pub mod route;

mod admit;
mod authenticate;
mod client_address;
mod counted;
mod exchange;
mod pacing;
mod record;
mod request_id;
mod rescue;
mod resend;
mod respond;
mod routing;
mod send;
mod served_name;
#[cfg(test)]
mod testing;
mod upstream_leg;
mod upstream_request;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use crate::body::{BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::proxy::logging::{Exchange, InFlightGauge, Logged};
use crate::state::{Shared, Snapshot};
pub use admit::ClientSlot;
pub use conn::ConnInfo;
use routing::Destination;
use send::{Replay, SendContext, Upstream};
use upstream_request::upstream_body;
pub(crate) use upstream_request::upstream_head;

/// The phases log under the request path's module name, as they did before they had files of
/// their own, so log filters and searches keep matching.
pub(crate) const LOG_TARGET: &str = "scim_proxy::proxy";

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
}

impl ProxyService {
    pub fn new(shared: Arc<Shared>, conn: ConnInfo) -> ProxyService {
        ProxyService {
            shared,
            conn: Arc::new(conn),
        }
    }
}

impl<B> tower::Service<Request<B>> for ProxyService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        Box::pin(async move { Ok(handle(shared, conn, req).await) })
    }
}

/// One request against one config snapshot: forwarded, or rescued into a SCIM Error; either way
/// answered with its request id, and logged when the response body is done.
async fn handle<B>(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let in_flight = conn.state.request_started();
    let gauge = InFlightGauge::start(&shared);
    let snapshot = shared.state.load_full();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let mut exchange = Exchange::new(
        request_id::request_id(req.headers()),
        req.method().clone(),
        path_and_query,
        conn.peer.ip(),
    );
    let req = req.map(|body| body.map_err(Into::into).boxed_unsync());
    let context = (&*shared, &*snapshot, &*conn);
    let mut res = match forward(context, &snapshot.client, req, &mut exchange).await {
        Ok(res) => res,
        Err(e) => rescue::rescue(e, &mut exchange),
    };
    if let Ok(v) = HeaderValue::from_str(&exchange.request_id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = res.status().as_u16();
    // Logged, counted and the connection freed when the response body has gone out.
    res.map(|body| {
        Logged::new(body, exchange, status, shared, snapshot, in_flight, gauge).boxed_unsync()
    })
}

/// The request path, phase by phase. A phase refuses with a `ProxyError` (answered by `rescue`,
/// nothing forwarded); what it found is recorded here, before any later phase can refuse, so the
/// log shows how far the request got.
async fn forward(
    (shared, snapshot, conn): (&Shared, &Snapshot, &ConnInfo),
    upstream: &dyn Upstream,
    req: Request<ProxyBody>,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let (listen, limits) = (&snapshot.config.listen, &snapshot.config.limits);
    // Who asks: a trusted proxy may name the client, who must then pass allow_cidrs (403).
    exchange.client_ip = client_address::client_ip(listen, conn, &parts.headers);
    client_address::check_allowed(listen, conn, exchange.client_ip)?;
    // The name addressed (400); it only ever selects among configured routes.
    let addressed = served_name::addressed(&parts, listen, conn)?;
    // Framing the upstream would take for plain bytes (501).
    admit::refuse_unknown_transfer_coding(&parts.headers)?;
    // On TLS a name this proxy serves, and the SNI (421): a forged Host is never reflected.
    served_name::check_served_name(snapshot, conn, addressed.authority())?;
    // The route (404), recorded first so that every later refusal is logged under it.
    let (index, route, runtime) = routing::select(snapshot, addressed.authority())?;
    (exchange.route, exchange.route_index) = (Some(route.name.clone()), Some(index));
    routing::warn_if_token_expired(route, runtime);
    // Only safe targets under a legacy prefix (404/400/414).
    let mapped = routing::map_path(route, parts.uri.path())?;
    // The IdP by its old token (401); the outcome is logged whatever it is.
    let outcome = authenticate::authenticate(route, &parts.headers);
    exchange.auth = Some(outcome.as_str());
    let client_index = authenticate::accepted(outcome)?;
    exchange.client = route.clients.get(client_index).map(|c| c.name.clone());
    // The declared size (400/413) and the IdP's in-flight slot (429), before a body byte is read.
    let client_slot = admit::admit(&parts.headers, limits, runtime, client_index)?;
    // Where the request goes and the base its URLs are given back under.
    let client_base = addressed.client_base(route, mapped.client_prefix);
    let dest = Destination::new((route, runtime), &mapped, parts.uri.query(), client_base);
    // The upstream head: target, header hygiene, v2 token, request id (400).
    upstream_request::prepare_head(&mut parts, listen, conn, &dest, &exchange.request_id)?;
    exchange.upstream_path = Some(dest.upstream_path.clone());
    // The body: counted, limited, JSON rewritten to the upstream's URLs and read for the log.
    let up = upstream_body(&mut parts, body, &dest, limits, &exchange.bytes_in).await?;
    (exchange.reading, exchange.request_json) = (Some(up.reading), up.json);
    // Kept to go again (a bodiless read after a reset, any of them with a rotated token after a
    // 401): only a request held whole, as it goes up.
    let replay = Replay::of(&parts, up.whole.as_ref());
    // The tenant's rate, shared by every IdP of the route: the request's send slot, or 429 with
    // Retry-After when it is beyond max_queue_wait; last before the send, so the wait is all pacing.
    exchange.waited = pacing::pace(route, runtime, &shared.metrics.pacing).await?;
    // The upstream leg: 504 after upstream_timeout, one reset retry, whose fault a failure is; the
    // route held on the upstream's rate signals; after a 401 with a rotated token one resend.
    let cx = || {
        SendContext::new(
            limits,
            &shared.retry_budget,
            &up.failure,
            &exchange.request_id,
        )
    };
    let req = (Request::from_parts(parts, up.body), replay);
    let leg = upstream_leg::send_upstream(upstream, shared, (route, runtime), req, cx).await;
    (exchange.upstream_time, exchange.retried) = (Some(leg.upstream_time), leg.retried);
    if let Some(resent) = &leg.resent {
        exchange.waited = exchange.waited.zip(resent.waited).map(|(a, b)| a + b);
        exchange.resent = Some(resend::TOKEN_ROTATED);
    }
    let res = leg.result?;
    exchange.upstream_status = Some(res.status().as_u16());
    // An answer to the new token is read with its mask, here and in the log.
    let rotated_dest = leg.resent.as_ref().map(|resent| {
        exchange.rotated_redaction = Some(resent.runtime.token_redaction.clone());
        dest.with_runtime(&resent.runtime)
    });
    let dest = rotated_dest.as_ref().unwrap_or(&dest);
    // The answer under the client's names and without the token; its JSON kept for the log.
    // An upstream error is kept for the status page too (its scimType and detail).
    let keep_copy = shared.traffic.is_some() || res.status().as_u16() >= 400;
    let (res, copy) = respond::respond(res, &exchange.method, dest, keep_copy).await?;
    exchange.response_json = copy;
    // The IdP's slot is freed with the exchange, when the response body is done.
    exchange.client_slot = Some(client_slot);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::proxy::send::InMemory;
    use crate::proxy::testing::{OKTA, V2_TOKEN, conn, fixture, scim_get};
    use http::Method;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<http::request::Parts>>>;

    /// An upstream in memory that keeps every request head and answers 200 with a user.
    fn recording(seen: Seen) -> impl Upstream {
        InMemory(tower::service_fn(move |req: Request<ProxyBody>| {
            seen.lock().unwrap().push(req.into_parts().0);
            async {
                let user = r#"{"id":"7","meta":{"location":"https://acme.goskope.com/api/v2/scim/Users/7"}}"#;
                let res = Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/scim+json")
                    .body(crate::body::full(user))?;
                Ok::<_, BoxError>(res)
            }
        }))
    }

    async fn run(
        req: http::request::Builder,
        seen: &Seen,
    ) -> (Result<Response<ProxyBody>, ProxyError>, Exchange) {
        let f = fixture("", "", "");
        let _dir = f.dir;
        let shared = Shared::new(f.snapshot, None).unwrap();
        let snapshot = shared.state.load_full();
        let conn = conn("192.0.2.1:40000", false, None);
        let req = req.body(crate::body::empty()).unwrap();
        let mut exchange = Exchange::new(
            "rid".into(),
            req.method().clone(),
            "/".into(),
            conn.peer.ip(),
        );
        let upstream = recording(seen.clone());
        let res = forward((&shared, &snapshot, &conn), &upstream, req, &mut exchange).await;
        (res, exchange)
    }

    #[tokio::test]
    async fn a_request_goes_through_every_phase_to_the_upstream_and_back() {
        let seen = Seen::default();
        let (res, exchange) = run(scim_get("/SCIM/v2/Users/7"), &seen).await;
        let res = res.unwrap();
        let sent = seen.lock().unwrap().pop().unwrap();
        assert_eq!(sent.uri, "https://acme.goskope.com/api/v2/scim/Users/7");
        assert_eq!(
            sent.headers[http::header::AUTHORIZATION],
            format!("Bearer {V2_TOKEN}").as_str()
        );
        assert_eq!(res.status(), 200);
        assert_eq!(exchange.route.as_deref(), Some("acme"));
        assert_eq!(
            (exchange.client.as_deref(), exchange.auth),
            (Some("okta"), Some("ok"))
        );
        assert_eq!(
            exchange.upstream_path.as_deref(),
            Some("/api/v2/scim/Users/7")
        );
        assert_eq!(exchange.upstream_status, Some(200));
        assert_eq!(exchange.reading.as_ref().map(|r| r.op), Some("user.read"));
        assert!(exchange.client_slot.is_some() && !exchange.retried);
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_as_far_as_the_request_got_and_nothing_is_sent() {
        let seen = Seen::default();
        let wrong = scim_get("/SCIM/v2/Users")
            .header(http::header::AUTHORIZATION, format!("Bearer x{OKTA}"));
        let (res, mut exchange) = run(wrong, &seen).await;
        let e = res.err().unwrap();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(
            (exchange.route.as_deref(), exchange.auth),
            (Some("acme"), Some("bad-scheme"))
        );
        assert!(seen.lock().unwrap().is_empty() && exchange.upstream_path.is_none());
        let answer = rescue::rescue(e, &mut exchange);
        assert_eq!(answer.status(), 401);
        assert!(
            answer
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        );
        assert_eq!(exchange.error, Some(ErrorKind::Unauthorized));
    }

    /// Answers 401 to any token but `accepted`; the first `resets` calls break before an answer.
    /// Every call's Authorization is kept.
    fn token_checking(
        accepted: &'static str,
        resets: usize,
        calls: Arc<Mutex<Vec<String>>>,
    ) -> impl Upstream {
        InMemory(tower::service_fn(move |req: Request<ProxyBody>| {
            let auth = req.headers()[http::header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned();
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(auth.clone());
                calls.len()
            };
            async move {
                if n <= resets {
                    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                    return Err::<Response<ProxyBody>, BoxError>(Box::new(reset));
                }
                let status = if auth == format!("Bearer {accepted}") {
                    200
                } else {
                    401
                };
                Ok(Response::builder()
                    .status(status)
                    .body(crate::body::empty())?)
            }
        }))
    }

    /// A GET through `forward` after the route's token file was rewritten to `NEW` (the snapshot
    /// still holds the old token).
    async fn after_rotation(upstream: &dyn Upstream) -> (u16, Exchange) {
        let f = fixture("", "", "");
        std::fs::write(f.dir.path().join("acme.token"), format!("{NEW}\n")).unwrap();
        let shared = Shared::new(f.snapshot, None).unwrap();
        let snapshot = shared.state.load_full();
        let conn = conn("192.0.2.1:40000", false, None);
        let req = scim_get("/SCIM/v2/Users/7")
            .body(crate::body::empty())
            .unwrap();
        let mut exchange = Exchange::new("rid".into(), Method::GET, "/".into(), conn.peer.ip());
        let res = forward((&shared, &snapshot, &conn), upstream, req, &mut exchange).await;
        (res.unwrap().status().as_u16(), exchange)
    }

    const NEW: &str = "v2-token-rotated-0001";

    #[tokio::test]
    async fn a_401_after_a_rotation_is_sent_once_more_with_the_new_token() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (status, exchange) = after_rotation(&token_checking(NEW, 0, calls.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(
            *calls.lock().unwrap(),
            [format!("Bearer {V2_TOKEN}"), format!("Bearer {NEW}")]
        );
        assert_eq!(exchange.resent, Some(resend::TOKEN_ROTATED));
        assert!(exchange.rotated_redaction.is_some() && !exchange.retried);
    }

    #[tokio::test]
    async fn the_token_resend_and_the_reset_retry_never_compound() {
        // A reset, the retry meets the 401: the request has gone twice, so the 401 stands.
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (status, exchange) = after_rotation(&token_checking(NEW, 1, calls.clone())).await;
        assert_eq!(status, 401);
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert!(exchange.retried && exchange.resent.is_none());
    }
}
