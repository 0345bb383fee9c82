//! Canned answers a test queues to stand in for SCIM handling (throttling, outages, delays).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::response::{Resp, body_forbidden};

/// A canned answer that replaces SCIM handling for one request.
#[derive(Clone, Debug, Default)]
pub struct Override {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Duration,
}

pub(super) fn override_response(o: Override) -> Resp {
    let no_body = body_forbidden(o.status);
    let mut resp = Response::new(Full::new(if no_body {
        Bytes::new()
    } else {
        o.body.clone()
    }));
    *resp.status_mut() = o.status;
    for (name, value) in &o.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                resp.headers_mut().append(n, v);
            }
            _ => tracing::warn!(%name, "skipping invalid override header"),
        }
    }
    if !no_body && !resp.headers().contains_key(CONTENT_LENGTH) {
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(o.body.len()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn overrides_are_fifo_recorded_and_delayed() {
        let h = harness(true, None).await;
        h.up.push_override(Override {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![
                ("Retry-After".into(), "7".into()),
                ("bad\nname".into(), "x".into()),
            ],
            body: Bytes::from_static(b"{\"detail\":\"slow down\"}"),
            delay: Duration::ZERO,
        });
        h.up.push_override(Override {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..Override::default()
        });
        // Overrides win even over authentication.
        let a = h.call("POST", "/anything", &[], Some("{}")).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.header("retry-after"), "7");
        assert_eq!(&a.body[..], b"{\"detail\":\"slow down\"}");
        assert_eq!(
            h.scim("GET", "/Users", None).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(h.scim("GET", "/Users", None).await.status, StatusCode::OK);
        let recorded = h.up.requests();
        assert_eq!(recorded.len(), 3);
        assert_eq!(recorded[0].path_and_query, "/anything");

        h.up.push_override(Override {
            status: StatusCode::GATEWAY_TIMEOUT,
            delay: Duration::from_millis(300),
            ..Override::default()
        });
        let started = std::time::Instant::now();
        let a = h.scim("GET", "/Users", None).await;
        assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Shutdown is prompt even with a long delay in flight.
        h.up.push_override(Override {
            status: StatusCode::OK,
            delay: Duration::from_secs(300),
            ..Override::default()
        });
        let client = h.client.clone();
        let uri = format!("{}/api/v2/scim/Users", h.origin);
        let pending = tokio::spawn(async move {
            let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
            let _ = client.request(req).await;
        });
        for _ in 0..200 {
            if h.up.requests().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(h.up.requests().len(), 5);
        let started = std::time::Instant::now();
        h.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::timeout(STEP, pending).await.unwrap().unwrap();
    }
}
