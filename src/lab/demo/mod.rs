//! The demo driver: throwaway PKI, embedded upstream, the proxy from a real config file, and an
//! IdP-like provisioning flow through it, printed step by step.

mod files;
mod flow;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::client::ScimClient;
use super::upstream::{Upstream, UpstreamOptions};
use crate::lab::devcerts::{self, DevPki, IssuedCert};
use crate::{state, tls};

/// Tokens of the demo only: the "old" tokens the IdPs keep, and the REST API v2 token.
pub const DEMO_OKTA_TOKEN: &str = "okta-old-scim-token";
pub const DEMO_ENTRA_TOKEN: &str = "entra-old-scim-token";
pub(super) const DEMO_V2_TOKEN_PREFIX: &str = "demo-v2-";
/// The demo's fixed egress (`egress.bind_ip`): not 127.0.0.1, so that the upstream's view of the
/// source address shows the one address a tenant allowlist needs.
pub const DEMO_EGRESS_IP: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Runs the demo; with `once`, stops after the flow (used by the tests and CI).
pub async fn run(listen: SocketAddr, once: bool) -> Result<(), String> {
    let dir = files::demo_dir()?;
    let pki =
        DevPki::new("scim-proxy demo CA").map_err(|e| format!("generating the demo CA: {e}"))?;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let upstream_cert = pki
        .issue(&["localhost"], &[localhost])
        .map_err(|e| format!("issuing the upstream certificate: {e}"))?;
    let proxy_cert = pki
        .issue(&["localhost", "addon-demo.goskope.com"], &[localhost])
        .map_err(|e| format!("issuing the proxy certificate: {e}"))?;
    let v2_token = format!("{DEMO_V2_TOKEN_PREFIX}{}", uuid::Uuid::new_v4().simple());

    let upstream = Upstream::start(UpstreamOptions {
        bind: SocketAddr::new(localhost, 0),
        tls: Some(devcerts::server_config(&upstream_cert)?),
        base_path: "/api/v2/scim".into(),
        tokens: vec![v2_token.clone()],
    })
    .await
    .map_err(|e| format!("starting the embedded upstream: {e}"))?;

    let config_path = dir.join("scim-proxy.toml");
    write_setup(&dir, &pki, &proxy_cert, &v2_token)?;
    files::write(&config_path, &files::demo_config(listen, upstream.addr()))?;

    let snapshot = state::read_config(&config_path)
        .and_then(|c| state::build(c, None))
        .map_err(|p| format!("the demo config does not load:\n{p}"))?;
    let running = crate::start(snapshot, Some(config_path.clone()))
        .await
        .map_err(|e| format!("{e} (is another demo running? try --listen 127.0.0.1:0)"))?;
    let port = running.proxy_addr.port();
    print_banner(upstream.addr().port(), port, &dir);

    let client_tls = devcerts::client_config(pki.ca_pem(), &tls::ALPN)?;
    let client = ScimClient::new(&format!("https://localhost:{port}"), client_tls, false);
    let result = flow::drive(&client, &upstream, &v2_token, &dir.join("v2.token")).await;
    print_outcome(&result, &dir);
    if result.is_ok() && !once {
        print_try_it(&dir, port, &config_path);
        let _ = tokio::signal::ctrl_c().await;
    }
    running.stop().await;
    upstream.shutdown().await;
    // The demo's private key and tokens do not outlive it.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    result
}

/// The CA the client trusts, the proxy's certificate and key, and the v2 token it sends.
fn write_setup(
    dir: &Path,
    pki: &DevPki,
    proxy_cert: &IssuedCert,
    v2_token: &str,
) -> Result<(), String> {
    files::write(&dir.join("ca.pem"), pki.ca_pem())?;
    files::write(&dir.join("proxy.crt"), &proxy_cert.cert_pem)?;
    files::write_private(&dir.join("proxy.key"), &proxy_cert.key_pem)?;
    files::write_private(&dir.join("v2.token"), v2_token)
}

fn print_banner(upstream_port: u16, port: u16, dir: &Path) {
    println!("scim-proxy demo");
    println!(
        "  embedded Netskope-like upstream  https://127.0.0.1:{upstream_port}/api/v2/scim (demands the v2 token)"
    );
    println!(
        "  scim-proxy                       https://localhost:{port}/SCIM/v2 (old URL, old IdP tokens)"
    );
    println!("  config, CA and keys in           {}", dir.display());
    println!();
}

/// Whether the flow passed, and what `scim-proxy report` makes of the traffic log it left.
fn print_outcome(result: &Result<(), String>, dir: &Path) {
    match result {
        Ok(()) => println!(
            "\nThe flow passed through scim-proxy: every call reached /api/v2/scim with the v2 token, from {DEMO_EGRESS_IP} (egress.bind_ip)."
        ),
        Err(e) => println!("\nThe flow FAILED: {e}"),
    }
    let traffic = dir.join("traffic.log");
    println!(
        "\nWhat the traffic log says (scim-proxy report {}):\n",
        traffic.display()
    );
    let mut report = Vec::new();
    match crate::observe::report::run(std::slice::from_ref(&traffic), false, &mut report) {
        Ok(()) => println!("{}", String::from_utf8_lossy(&report)),
        Err(e) => println!("  (no report: {e})"),
    }
}

fn print_try_it(dir: &Path, port: u16, config_path: &Path) {
    println!("\nTry it yourself (Ctrl-C to stop):");
    let ca = dir.join("ca.pem");
    println!(
        "  curl --cacert {} -H 'Authorization: Bearer {DEMO_OKTA_TOKEN}' 'https://localhost:{port}/SCIM/v2/Users?startIndex=1&count=2'",
        ca.display()
    );
    println!(
        "  curl --cacert {} -H 'Authorization: Bearer {DEMO_ENTRA_TOKEN}' 'https://localhost:{port}/SCIM/V2/1234/Groups'",
        ca.display()
    );
    println!(
        "  curl --cacert {} -i 'https://localhost:{port}/SCIM/v2/Users'        # no token: 401, never forwarded",
        ca.display()
    );
    println!("  scim-proxy check --config {}", config_path.display());
}
