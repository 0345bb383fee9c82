//! Inputs for the phase tests, without sockets: a snapshot built from a small TOML the way `serve`
//! builds one, a connection as the listener describes it, and requests.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use tempfile::TempDir;

use crate::proxy::conn::{ConnInfo, ConnState};
use crate::state::Snapshot;

/// The IdP's old bearer token the test route accepts (client `okta`).
pub(crate) const OKTA: &str = "okta-old-scim-token";
/// The route's REST API v2 token.
pub(crate) const V2_TOKEN: &str = "v2-token-0123456789abcdef";
/// The name the test route serves.
pub(crate) const HOST: &str = "scim.example";

/// A snapshot and the directory its token file lives in.
pub(crate) struct Fixture {
    pub dir: TempDir,
    pub snapshot: Snapshot,
}

/// One route `acme` for `HOST` (client `okta`), on a plain listener; the strings are added to the
/// `[listen]`, `[limits]` and `[[routes]]` tables.
pub(crate) fn fixture(listen: &str, limits: &str, route: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("acme.token"), format!("{V2_TOKEN}\n")).expect("token file");
    let okta = hex::encode(crate::auth::token_sha256(OKTA.as_bytes()));
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{listen}\n[limits]\n{limits}\n[log]\ntraffic = \"off\"\n\n\
         [[routes]]\nname = \"acme\"\nupstream = \"https://acme.goskope.com/api/v2/scim\"\n\
         token_file = \"acme.token\"\nhosts = [\"{HOST}\"]\n{route}\n\
         [[routes.clients]]\nname = \"okta\"\ntoken_sha256 = \"{okta}\"\n"
    );
    let config = crate::config::parse(&toml, &dir.path().join("scim-proxy.toml"))
        .unwrap_or_else(|p| panic!("config: {p:?}"));
    let snapshot = crate::state::build(config, None).unwrap_or_else(|p| panic!("build: {p:?}"));
    Fixture { dir, snapshot }
}

/// A connection from `peer`, on TLS with `sni` when given.
pub(crate) fn conn(peer: &str, tls: bool, sni: Option<&str>) -> ConnInfo {
    let peer: SocketAddr = peer.parse().expect("socket address");
    ConnInfo {
        peer,
        tcp_peer: peer,
        tls,
        sni: sni.map(str::to_owned),
        state: Arc::new(ConnState::new()),
    }
}

/// The head of a request, as hyper hands it over.
pub(crate) fn parts(builder: http::request::Builder) -> http::request::Parts {
    builder.body(()).expect("request").into_parts().0
}

/// A request to `HOST` with the IdP's token.
pub(crate) fn scim_get(path: &str) -> http::request::Builder {
    Request::get(path)
        .header(http::header::HOST, HOST)
        .header(http::header::AUTHORIZATION, format!("Bearer {OKTA}"))
}
