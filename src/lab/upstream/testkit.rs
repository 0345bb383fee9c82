//! Test harness: an upstream on loopback TLS and a client to call it.

pub(super) use std::net::{IpAddr, Ipv4Addr};
pub(super) use std::time::Duration;

pub(super) use bytes::Bytes;
pub(super) use http::{HeaderMap, Method, Request, StatusCode};
pub(super) use http_body_util::{BodyExt, Full};
pub(super) use hyper_rustls::HttpsConnector;
pub(super) use hyper_util::client::legacy::Client;
pub(super) use hyper_util::client::legacy::connect::HttpConnector;
pub(super) use hyper_util::rt::TokioExecutor;
pub(super) use serde_json::{Value, json};

pub(super) use super::{
    ENTERPRISE_URN, ERROR_URN, GROUP_URN, LIST_URN, PATCH_URN, USER_URN, Upstream, UpstreamOptions,
};
use crate::lab::devcerts::{DevPki, client_config, server_config};

pub(super) const TOKEN: &str = "v2-token-1";
pub(super) const STEP: Duration = Duration::from_secs(10);

pub(super) struct Harness {
    pub(super) up: Upstream,
    pub(super) client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub(super) origin: String,
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) version: http::Version,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub(super) fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

pub(super) async fn harness(h2: bool, local_ip: Option<IpAddr>) -> Harness {
    let pki = DevPki::new("upstream test CA").unwrap();
    let leaf = pki
        .issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let up = Upstream::start(UpstreamOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: Some(server_config(&leaf).unwrap()),
        base_path: "/api/v2/scim/".into(),
        tokens: vec![TOKEN.into()],
    })
    .await
    .unwrap();
    // hyper-rustls sets ALPN itself and panics if the config already has some.
    let tls = client_config(pki.ca_pem(), &[]).unwrap();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_local_address(local_ip);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1();
    let https = if h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    let client = Client::builder(TokioExecutor::new()).build(https);
    let origin = format!("https://127.0.0.1:{}", up.addr().port());
    Harness { up, client, origin }
}

impl Harness {
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let body = Bytes::from(body.unwrap_or_default().to_string());
        self.call_raw(method, path, headers, body).await
    }

    pub(super) async fn call_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.origin));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let fut = self.client.request(req.body(Full::new(body)).unwrap());
        let resp = tokio::time::timeout(STEP, fut).await.unwrap().unwrap();
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(STEP, body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        }
    }

    /// Authenticated SCIM call under the base path.
    pub(super) async fn scim(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.scim_with(method, path, &[], body).await
    }

    pub(super) async fn scim_with(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/scim+json; charset=utf-8"),
        ];
        headers.extend_from_slice(extra);
        self.call(method, &format!("/api/v2/scim{path}"), &headers, body)
            .await
    }

    pub(super) async fn create_user(&self, user_name: &str) -> Value {
        let body = json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "userName": user_name,
            "externalId": format!("ext-{user_name}"),
            "name": {"givenName": "Given", "familyName": "Family"},
            "emails": [{"value": user_name, "type": "work", "primary": true}],
            ENTERPRISE_URN: {"department": "Eng"},
        });
        let a = self.scim("POST", "/Users", Some(&body.to_string())).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        a.json()
    }

    pub(super) async fn shutdown(self) {
        tokio::time::timeout(STEP, self.up.shutdown())
            .await
            .unwrap();
    }
}

pub(super) fn assert_error(a: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(a.status.as_u16(), status, "{:?}", a.body);
    assert_eq!(a.header("content-type"), "application/json");
    let v = a.json();
    assert_eq!(v["schemas"], json!([ERROR_URN]));
    assert_eq!(v["status"], json!(status.to_string()));
    assert!(v["detail"].is_string());
    assert_eq!(v["scimType"].as_str(), scim_type, "{v}");
}

pub(super) fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}
