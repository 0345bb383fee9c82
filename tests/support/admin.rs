//! The admin listener's status endpoints (`/`, `/status.json`) over plain HTTP, with or without
//! the admin bearer token.

use std::net::SocketAddr;

use scim_proxy::lab::client::Answer;
use serde_json::Value;
use tokio::net::TcpStream;

use super::*;

/// `GET path` on the admin listener, with `Authorization: Bearer <token>` when given.
pub async fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let mut tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect to the admin listener in time")
        .expect("connect to the admin listener");
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let req = raw_request("GET", path, &addr.to_string(), &headers);
    exchange(&mut tcp, &req).await.expect("admin answer")
}

/// `/status.json` parsed, asserting a 200.
pub async fn status_json(addr: SocketAddr, token: Option<&str>) -> Value {
    let a = admin_get(addr, "/status.json", token).await;
    let text = String::from_utf8_lossy(&a.body).into_owned();
    assert_eq!(a.status.as_u16(), 200, "/status.json: {text}");
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("/status.json not JSON ({e}): {text}"))
}

/// `/` as text, asserting a 200 HTML answer.
pub async fn status_page(addr: SocketAddr, token: Option<&str>) -> String {
    let a = admin_get(addr, "/", token).await;
    let text = String::from_utf8_lossy(&a.body).into_owned();
    assert_eq!(a.status.as_u16(), 200, "/: {text}");
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html"), "content-type {ct:?}");
    text
}
