//! One route's probe over the real egress: connect (and TLS) as serving does, describe that
//! connection, then send an authenticated `GET <upstream>/Users?count=1` over it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

use super::meaning::{self, Failure, failure};
use crate::config::Route;
use crate::state::{RouteRuntime, Snapshot};
use crate::upstream::classify::UpstreamFault;

/// A TLS connection to the upstream as the serving connector makes it.
type TlsConnection = TokioIo<tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>>;

/// What the probe saw of a route that answered.
pub(super) struct Probe {
    pub connection: Connection,
    pub status: StatusCode,
    pub latency: Duration,
    /// The `detail` of a SCIM Error answer.
    pub detail: Option<String>,
    /// Why a 2xx body is not a SCIM ListResponse, if it is not.
    pub list: Option<String>,
}

/// The egress path and TLS session of the probe's connection.
pub(super) struct Connection {
    pub source: Option<String>,
    pub tls_version: String,
    pub alpn: String,
    pub cert: String,
}

pub(super) async fn probe(
    snapshot: &Snapshot,
    route: &Route,
    runtime: &RouteRuntime,
    target: &str,
) -> Result<Probe, Failure> {
    let uri: http::Uri = target.parse().map_err(|e| {
        failure(
            format!("the upstream URL is not usable: {e}"),
            "fix routes.upstream",
        )
    })?;
    let started = Instant::now();
    let tls = connect(snapshot, uri).await?;
    let connection = describe(&tls, snapshot);
    let res = send(snapshot, route, runtime, tls).await?;
    let latency = started.elapsed();
    let status = res.status();
    let (detail, list) =
        super::answer::read_answer(res, runtime.token.expose_for_redaction()).await;
    Ok(Probe {
        connection,
        status,
        latency,
        detail,
        list,
    })
}

/// A connection made by serving's connector (egress, forward proxy, verified TLS).
async fn connect(snapshot: &Snapshot, uri: http::Uri) -> Result<TlsConnection, Failure> {
    let connecting = |e: crate::body::BoxError| meaning::of_fault(&UpstreamFault::read(&*e, true));
    let mut connector = snapshot
        .connector()
        .map_err(|e| failure(e, "the egress settings cannot be used"))?;
    let stream = connector
        .ready()
        .await
        .map_err(connecting)?
        .call(uri)
        .await
        .map_err(connecting)?;
    match stream {
        MaybeHttpsStream::Https(tls) => Ok(tls),
        MaybeHttpsStream::Http(_) => Err(failure(
            "the connection is not TLS",
            "internal: the connector must use TLS",
        )),
    }
}

fn describe(tls: &TlsConnection, snapshot: &Snapshot) -> Connection {
    let (io, session) = tls.inner().get_ref();
    let tcp = io.inner().inner();
    let source = match (tcp.local_addr(), &snapshot.config.egress.via_proxy) {
        (Ok(local), Some(p)) => Some(format!("{} (to the forward proxy {})", local.ip(), p.url)),
        (Ok(local), None) => Some(format!(
            "{} -> {}",
            local.ip(),
            peer_or_unknown(tcp.peer_addr().ok())
        )),
        _ => None,
    };
    let tls_version = session
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_else(|| "unknown".into());
    let alpn = session
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_else(|| "http/1.1".into());
    let cert = match session.peer_certificates().and_then(|c| c.first()) {
        Some(der) => match crate::tls::cert_info(der) {
            Ok(info) => format!(
                "{} issued by {}, valid until {}",
                info.subject,
                info.issuer,
                humantime::format_rfc3339_seconds(info.not_after)
            ),
            Err(e) => format!("unreadable ({e})"),
        },
        None => "none presented".into(),
    };
    Connection {
        source,
        tls_version,
        alpn,
        cert,
    }
}

/// The request goes over this connection, built and sent as serving sends one: the same head
/// (proxy::upstream_head) through a client with serving's settings (origin-form target, Host,
/// HTTP/2 by ALPN).
async fn send(
    snapshot: &Snapshot,
    route: &Route,
    runtime: &RouteRuntime,
    tls: TlsConnection,
) -> Result<Response<Incoming>, Failure> {
    let client = crate::upstream::client_builder(&snapshot.config.limits).build(
        crate::upstream::OnceConnector::new(MaybeHttpsStream::Https(tls)),
    );
    let path_and_query =
        crate::proxy::route::upstream_path_and_query(&route.upstream, "/Users", Some("count=1"));
    let (mut parts, ()) = Request::get("/")
        .header(header::ACCEPT, "application/scim+json")
        .header(
            header::USER_AGENT,
            concat!("scim-proxy-preflight/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
        .map_err(|e| failure(e.to_string(), "internal"))?
        .into_parts();
    crate::proxy::upstream_head(
        &mut parts,
        route,
        runtime,
        &path_and_query,
        "scim-proxy-preflight",
    )
    .map_err(|e| failure(e.detail, "fix routes.upstream"))?;
    client
        .request(Request::from_parts(parts, crate::body::empty()))
        .await
        .map_err(|e| meaning::of_fault(&UpstreamFault::of_client(&e)))
}

fn peer_or_unknown(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
}
