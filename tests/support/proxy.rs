//! A proxy running in process in front of its embedded upstreams ([`TestProxy`]), and the checks of
//! the answers it gives itself.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use scim_proxy::Running;
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::upstream::Upstream;

use super::*;

/// A running proxy in front of its embedded upstreams.
pub struct TestProxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    /// `https://localhost:<port>`, what the client addresses.
    pub base: String,
    pub client: ScimClient,
    pub prepared: Prepared,
}

impl TestProxy {
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.prepared.upstreams[i]
    }

    pub fn v2(&self, route: usize) -> &str {
        &self.prepared.v2_tokens[route]
    }

    pub fn ca_pem(&self) -> &str {
        &self.prepared.ca_pem
    }

    pub fn dir(&self) -> &Path {
        self.prepared.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.prepared.config_path
    }

    /// The traffic log so far, one JSON value per line.
    pub fn traffic(&self) -> Vec<serde_json::Value> {
        read_traffic(self.dir())
    }

    /// Every secret a response body must never carry.
    pub fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self.prepared.v2_tokens.clone();
        for r in &self.prepared.routes {
            for (_, t) in &r.clients {
                s.push(t.clone());
            }
        }
        s
    }

    /// Requests recorded by every upstream, in upstream order.
    pub fn upstream_total(&self) -> usize {
        self.prepared
            .upstreams
            .iter()
            .map(|u| u.requests().len())
            .sum()
    }

    /// A request builder for `path` on the proxy (no credentials).
    pub fn req(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("accept", "application/scim+json")
    }

    pub async fn call(&self, req: http::request::Builder, body: impl Into<Bytes>) -> Answer {
        let req = req.body(Full::new(body.into())).expect("request");
        self.client
            .request(req)
            .await
            .expect("request to the proxy")
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.client
            .send(Method::GET, path, Some(token), None)
            .await
            .expect("request to the proxy")
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        self.client
            .send(method, path, token, body)
            .await
            .expect("request to the proxy")
    }

    /// Writes `request` raw over TLS (http/1.1) and reads the answer to EOF.
    pub async fn raw(&self, request: &[u8]) -> Answer {
        raw_tls_exchange(self.addr, &self.prepared.ca_pem, request)
            .await
            .expect("raw exchange with the proxy")
    }

    /// Asserts a SCIM Error the proxy answered itself: status, schemas, status string, detail
    /// containing each of `detail_has` (case-insensitive), and no secret anywhere in the answer.
    pub fn assert_error(&self, a: &Answer, status: u16, detail_has: &[&str]) {
        assert_scim_error(a, status, detail_has, &self.secrets());
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            bounded("proxy stop", r.stop()).await;
        }
        for u in std::mem::take(&mut self.prepared.upstreams) {
            bounded("upstream shutdown", u.shutdown()).await;
        }
    }
}

pub fn assert_scim_error(a: &Answer, status: u16, detail_has: &[&str], secrets: &[String]) {
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status.as_u16(), status, "status; body: {text}");
    let ct = a.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/scim+json"),
        "content-type {ct:?}; body: {text}"
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text}"));
    assert_eq!(v["schemas"], serde_json::json!([SCIM_ERROR_URN]), "{text}");
    assert_eq!(v["status"], serde_json::json!(status.to_string()), "{text}");
    let detail = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail string: {text}"));
    assert!(!detail.trim().is_empty(), "empty detail: {text}");
    for want in detail_has {
        assert!(
            detail.to_lowercase().contains(&want.to_lowercase()),
            "detail {detail:?} should mention {want:?}"
        );
    }
    assert_no_secret(a, secrets);
}

/// Neither the body nor any header carries one of `secrets`.
pub fn assert_no_secret(a: &Answer, secrets: &[String]) {
    let text = String::from_utf8_lossy(&a.body);
    for s in secrets {
        assert!(!text.contains(s.as_str()), "the body leaks a token: {text}");
        for (k, v) in &a.headers {
            assert!(
                !String::from_utf8_lossy(v.as_bytes()).contains(s.as_str()),
                "header {k} leaks a token"
            );
        }
    }
}

pub fn secrets_of(p: &Prepared) -> Vec<String> {
    let mut s = p.v2_tokens.clone();
    s.extend([OKTA.to_string(), ENTRA.to_string()]);
    s
}
