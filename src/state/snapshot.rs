//! `Snapshot`: everything one request needs, loaded at once, and `RouteRuntime`, what a route
//! needs beyond its config (its upstream base, v2 token, in-flight counters, token expiry, pacer).

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

use crate::body::rewrite::Needles;
use crate::config::{Config, Route};
use crate::observe::traffic_log::PiiPolicy;
use crate::scim::base::Base;
use crate::state::pacer::Pacer;
use crate::state::token_expiry::TokenExpiry;
use crate::state::v2_token::V2Token;
use crate::tls;
use crate::upstream::{self, UpstreamClient};

/// Everything one request needs, loaded at once. A request takes one snapshot and keeps it to the end.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Parallel to `config.routes`; `route(i)` and `routes()` give the two together.
    pub routes: Vec<RouteRuntime>,
    pub tls: Option<TlsAcceptor>,
    /// The serving certificate's subject and validity (None for plain HTTP).
    pub cert_info: Option<tls::CertInfo>,
    /// The names the serving certificate covers; a Host outside them (and the routes' names) is 421.
    pub cert_names: Option<tls::CertNames>,
    /// With `[listen.acme]`: the certificate the renewal loop keeps, shared with later snapshots.
    pub acme: Option<Arc<tls::acme::AcmeCell>>,
    pub client: UpstreamClient,
    /// Kept to rebuild connectors and to tell whether a reload may keep `client`.
    pub(super) upstream_roots: Vec<CertificateDer<'static>>,
    pub(super) proxy_auth: Option<http::HeaderValue>,
    /// How personal values are written to the traffic log.
    pub pii: PiiPolicy,
}

pub struct RouteRuntime {
    pub base: Base,
    pub token: V2Token,
    /// The token's spellings and mask for response bodies, built once.
    pub token_redaction: Arc<Needles>,
    /// Requests in flight per client (parallel to the route's `clients`); kept across reloads by name.
    pub client_in_flight: Vec<Arc<AtomicUsize>>,
    /// `token_expires`, tied to the token it was written for (None: not configured).
    pub token_expiry: Option<TokenExpiry>,
    /// The route's pacer when it is paced; kept across a reload that leaves its pacing keys as
    /// they were.
    pub pacer: Option<Arc<Mutex<Pacer>>>,
}

impl Snapshot {
    /// The certificate IdPs are shown now: the ACME-held one, or the one from `cert`/`key`.
    pub fn serving_cert_info(&self) -> Option<tls::CertInfo> {
        match &self.acme {
            Some(cell) => cell.current().map(|held| held.info.clone()),
            None => self.cert_info.clone(),
        }
    }

    /// A fresh connector with this snapshot's egress and TLS settings (for `check --live`).
    pub fn connector(&self) -> Result<upstream::Connector, String> {
        let tls = tls::upstream_client_config(
            &self.upstream_roots,
            self.config.egress.ca_file.as_deref(),
        )?;
        upstream::build_connector(
            &self.config.egress,
            &self.config.limits,
            tls,
            self.proxy_auth.clone(),
        )
    }

    pub fn route(&self, i: usize) -> Option<(&Route, &RouteRuntime)> {
        Some((self.config.routes.get(i)?, self.routes.get(i)?))
    }

    /// Every route with its runtime state, in config order.
    pub fn routes(&self) -> impl Iterator<Item = (&Route, &RouteRuntime)> {
        self.config.routes.iter().zip(&self.routes)
    }

    /// The route called `name`, with its runtime state.
    pub fn route_named(&self, name: &str) -> Option<(&Route, &RouteRuntime)> {
        self.routes().find(|(route, _)| route.name == name)
    }

    /// Per route with a `token_expires`: its name, whether the date applies to the token in use,
    /// and the date (for the metrics).
    pub fn token_expiry_dates(&self) -> Vec<(&str, bool, std::time::SystemTime)> {
        self.routes()
            .filter_map(|(route, runtime)| {
                let expiry = runtime.token_expiry.as_ref()?;
                Some((route.name.as_str(), expiry.applies(), expiry.date))
            })
            .collect()
    }
}

impl RouteRuntime {
    /// The in-flight counter of `route`'s client `name` (this runtime being `route`'s).
    pub fn in_flight_of(&self, route: &Route, name: &str) -> Option<&Arc<AtomicUsize>> {
        let j = route.clients.iter().position(|c| c.name == name)?;
        self.client_in_flight.get(j)
    }
}
