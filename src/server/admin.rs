//! The admin listener (plain HTTP, keep it on loopback or a private network): `/healthz`, `/readyz`,
//! `/metrics`, the status page `/` and `/status.json`. With `[admin] token_sha256`, the last three
//! need that bearer token; the probes stay open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use subtle::ConstantTimeEq;

use crate::body::{ProxyBody, full};
use crate::state::Shared;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"method not allowed"}"#.into(),
        );
    }
    let path = req.uri().path();
    if matches!(path, "/" | "/status.json" | "/metrics") && !authorized(shared, req) {
        return unauthorized();
    }
    match path {
        "/" => {
            let doc = super::status_page::status_doc(shared, SystemTime::now());
            let refresh = refresh_seconds(req.uri().query());
            page(crate::observe::status::html::render(&doc, refresh))
        }
        "/status.json" => {
            let doc = super::status_page::status_doc(shared, SystemTime::now());
            match serde_json::to_string_pretty(&doc) {
                Ok(body) => json(StatusCode::OK, body),
                Err(_) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"status":"cannot render the status"}"#.into(),
                ),
            }
        }
        "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        "/readyz" => {
            let snapshot = shared.state.load();
            let now = SystemTime::now();
            let problems =
                crate::state::readiness::readiness_problems(&snapshot, shared.is_ready(), now);
            let warnings = crate::state::readiness::readiness_warnings(&snapshot, now);
            let mut body = if problems.is_empty() {
                serde_json::json!({"status": "ready"})
            } else {
                serde_json::json!({"status": "not ready", "problems": problems})
            };
            if !warnings.is_empty() {
                body["warnings"] = serde_json::json!(warnings);
            }
            let status = if problems.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            // Lost log records do not stop provisioning: shown, but readiness stays as it is.
            let drops = shared.log_drops();
            if drops.any() {
                body["log_records_dropped"] =
                    serde_json::json!({"traffic": drops.traffic, "tracing": drops.tracing});
            }
            json(status, body.to_string())
        }
        "/metrics" => {
            let text = shared.metrics.render(
                &shared.state.load().token_expiry_dates(),
                &shared.log_drops(),
            );
            let mut res = Response::new(full(text));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        _ => json(StatusCode::NOT_FOUND, r#"{"status":"not found"}"#.into()),
    }
}

/// The request carries the admin bearer token, or none is configured.
fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let snapshot = shared.state.load();
    let Some(expected) = snapshot.config.admin.as_ref().and_then(|a| a.token_sha256) else {
        return true;
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    crate::auth::bearer_token(value.as_bytes())
        .is_some_and(|t| bool::from(crate::auth::token_sha256(t).ct_eq(&expected)))
}

fn unauthorized() -> Response<ProxyBody> {
    let mut res = crate::error::scim_error_response(
        StatusCode::UNAUTHORIZED,
        None,
        "this admin endpoint needs Authorization: Bearer <the admin token> ([admin] token_sha256)",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"scim-proxy admin\""),
    );
    res
}

/// `?refresh=N`: reload the page every N seconds (5 to 3600).
fn refresh_seconds(query: Option<&str>) -> Option<u32> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("refresh="))?;
    value.trim().parse::<u32>().ok().map(|n| n.clamp(5, 3600))
}

/// The HTML page: nothing external may load, and nothing may frame it.
fn page(body: String) -> Response<ProxyBody> {
    let mut res = Response::new(full(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    res
}

fn json(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}
