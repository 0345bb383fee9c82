//! One request end to end: read and record it, refuse absolute-form targets, play a queued
//! override or check the token, then route it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HOST;
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::ctx::Ctx;
use super::error::ScimError;
use super::lock;
use super::overrides::{Override, override_response};
use super::query::Query;
use super::response::Resp;
use super::routes::route;
use super::state::{RecordedRequest, State, stopped};

const MAX_BODY: usize = 64 * 1024 * 1024;

/// Answers one request; every request is recorded first, rejected ones too.
pub(super) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    req: Request<Incoming>,
) -> Resp {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await;
    let authenticated = state.authenticated(&parts.headers);
    record(&state, &parts, &body, peer, authenticated);
    // Strict, as many origin servers are: an HTTP/1 absolute-form target is for a forward proxy.
    if parts.version != http::Version::HTTP_2 && parts.uri.authority().is_some() {
        return ScimError::new(
            StatusCode::BAD_REQUEST,
            None,
            "absolute-form request target refused: this is an origin server".into(),
        )
        .into_response();
    }

    // The tenant's rate limit is in front of everything, as Netskope's is.
    let verdict = lock(&state.rate_limit)
        .as_mut()
        .map(|l| (l.take(std::time::Instant::now()), l.limit()));
    if let Some((verdict, limit)) = verdict {
        let mut resp = if verdict.allowed {
            answer(&state, parts, body, authenticated, local).await
        } else {
            ScimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "rate limit exceeded for this tenant".into(),
            )
            .into_response()
        };
        verdict.stamp(&mut resp);
        resp.headers_mut()
            .insert("ratelimit-limit", http::HeaderValue::from(limit));
        return resp;
    }
    answer(&state, parts, body, authenticated, local).await
}

/// A queued override, or the SCIM answer to an authenticated request.
async fn answer(
    state: &Arc<State>,
    parts: Parts,
    body: Result<Bytes, ScimError>,
    authenticated: bool,
    local: Option<SocketAddr>,
) -> Resp {
    let canned = lock(&state.overrides).pop_front();
    let resp = if let Some(o) = canned {
        play(state, o).await
    } else {
        body.and_then(|body| {
            if !authenticated {
                return Err(ScimError::new(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "missing, invalid or expired API token".into(),
                ));
            }
            let ctx = Ctx {
                method: &parts.method,
                headers: &parts.headers,
                query: Query::parse(parts.uri.query()),
                body: &body,
                base_url: base_url(state, &parts, local),
            };
            route(state, parts.uri.path(), &ctx)
        })
        .unwrap_or_else(ScimError::into_response)
    };
    tracing::debug!(
        method = %parts.method,
        uri = %parts.uri,
        status = resp.status().as_u16(),
        "upstream answered"
    );
    resp
}

/// The whole body, up to [`MAX_BODY`]; what went wrong as the SCIM error to answer with.
async fn read_body(body: Incoming) -> Result<Bytes, ScimError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("request body exceeds {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ScimError::bad_request(
            "invalidSyntax",
            format!("could not read request body: {e}"),
        )),
    }
}

fn record(
    state: &State,
    parts: &Parts,
    body: &Result<Bytes, ScimError>,
    peer: SocketAddr,
    authenticated: bool,
) {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    lock(&state.requests).push(RecordedRequest {
        method: parts.method.clone(),
        path_and_query,
        headers: parts.headers.clone(),
        body: body.as_ref().ok().cloned().unwrap_or_default(),
        peer,
        version: parts.version,
        authenticated,
    });
}

/// A queued override, after its delay (cut short by shutdown).
async fn play(state: &State, o: Override) -> Resp {
    if !o.delay.is_zero() {
        let mut stop = state.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(o.delay) => {}
            _ = stopped(&mut stop) => {}
        }
    }
    override_response(o)
}

/// `<scheme>://<Host as received><base_path>`: locations name the host the client asked for.
fn base_url(state: &State, parts: &Parts, local: Option<SocketAddr>) -> String {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .or_else(|| local.map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("{}://{host}{}", state.scheme, state.base_path)
}
