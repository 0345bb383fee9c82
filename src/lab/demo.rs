//! The demo driver: throwaway PKI, embedded upstream, the proxy from a real config file, and an
//! IdP-like provisioning flow through it, printed step by step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::json;

use super::client::{Answer, ScimClient};
use super::upstream::{Upstream, UpstreamOptions};
use crate::lab::devcerts::{self, DevPki};
use crate::{state, tls};

/// Tokens of the demo only: the "old" tokens the IdPs keep, and the REST API v2 token.
pub const DEMO_OKTA_TOKEN: &str = "okta-old-scim-token";
pub const DEMO_ENTRA_TOKEN: &str = "entra-old-scim-token";
const DEMO_V2_TOKEN_PREFIX: &str = "demo-v2-";
/// The demo's fixed egress (`egress.bind_ip`): not 127.0.0.1, so that the upstream's view of the
/// source address shows the one address a tenant allowlist needs.
pub const DEMO_EGRESS_IP: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Runs the demo; with `once`, stops after the flow (used by the tests and CI).
pub async fn run(listen: SocketAddr, once: bool) -> Result<(), String> {
    let dir = demo_dir()?;
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

    write(&dir.join("ca.pem"), pki.ca_pem())?;
    write(&dir.join("proxy.crt"), &proxy_cert.cert_pem)?;
    write_private(&dir.join("proxy.key"), &proxy_cert.key_pem)?;
    write_private(&dir.join("v2.token"), &v2_token)?;
    let config_path = dir.join("scim-proxy.toml");
    write(&config_path, &demo_config(listen, upstream.addr()))?;

    let snapshot = state::read_config(&config_path)
        .and_then(|c| state::build(c, None))
        .map_err(|p| format!("the demo config does not load:\n{p}"))?;
    let running = crate::start(snapshot, Some(config_path.clone()))
        .await
        .map_err(|e| format!("{e} (is another demo running? try --listen 127.0.0.1:0)"))?;
    let port = running.proxy_addr.port();

    println!("scim-proxy demo");
    println!(
        "  embedded Netskope-like upstream  https://127.0.0.1:{}/api/v2/scim (demands the v2 token)",
        upstream.addr().port()
    );
    println!(
        "  scim-proxy                       https://localhost:{port}/SCIM/v2 (old URL, old IdP tokens)"
    );
    println!("  config, CA and keys in           {}", dir.display());
    println!();

    let client_tls = devcerts::client_config(pki.ca_pem(), &tls::ALPN)?;
    let client = ScimClient::new(&format!("https://localhost:{port}"), client_tls, false);
    let result = drive(&client, &upstream, &v2_token).await;

    match &result {
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
    if result.is_ok() && !once {
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

fn demo_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("scim-proxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Keys and tokens are readable by their owner only.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("restricting {}: {e}", path.display()))?;
    }
    Ok(())
}

fn demo_config(listen: SocketAddr, upstream: SocketAddr) -> String {
    let okta = hex::encode(crate::auth::token_sha256(DEMO_OKTA_TOKEN.as_bytes()));
    let entra = hex::encode(crate::auth::token_sha256(DEMO_ENTRA_TOKEN.as_bytes()));
    format!(
        r#"# Written by `scim-proxy demo`; see config/scim-proxy.example.toml for every key.
[listen]
addr = "{listen}"
cert = "proxy.crt"
key = "proxy.key"

[admin]
addr = "127.0.0.1:0"    # /healthz /readyz /metrics (port chosen at start)

[log]
traffic = "traffic.log" # one JSON line per request; `scim-proxy report traffic.log` summarises it

[egress]
bind_ip = "{DEMO_EGRESS_IP}"   # every upstream connection leaves from this fixed address: the one a tenant allowlists
ca_file = "ca.pem"      # the demo CA signed the embedded upstream's certificate

[[routes]]
name = "demo"
upstream = "https://127.0.0.1:{port}/api/v2/scim"
token_file = "v2.token"
legacy_tenant_id = "1234"

[[routes.clients]]
name = "okta"
token_sha256 = "{okta}"     # sha256("{DEMO_OKTA_TOKEN}")

[[routes.clients]]
name = "entra"
token_sha256 = "{entra}"    # sha256("{DEMO_ENTRA_TOKEN}")
"#,
        port = upstream.port()
    )
}

struct Step<'a> {
    client: &'a ScimClient,
    upstream: &'a Upstream,
    v2_token: &'a str,
    n: usize,
}

impl Step<'_> {
    /// Sends one request as `idp`, prints what the IdP got and what the upstream saw, checks the status.
    async fn call(
        &mut self,
        what: &str,
        idp: (&str, Option<&str>),
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        want: StatusCode,
    ) -> Result<Answer, String> {
        self.n += 1;
        let seen_before = self.upstream.requests().len();
        let answer = self
            .client
            .send(method.clone(), path, idp.1, body.as_ref())
            .await?;
        println!("{:>2}. {what}", self.n);
        println!("    {} {method} {path}  ->  {}", idp.0, answer.status);
        let seen = self.upstream.requests();
        match seen.get(seen_before..).unwrap_or_default() {
            [] => println!("    upstream saw nothing (refused at the proxy)"),
            reqs => {
                for r in reqs {
                    if r.peer.ip() != DEMO_EGRESS_IP {
                        return Err(format!(
                            "step {} ({what}): the upstream saw the request from {}, not from the fixed egress {DEMO_EGRESS_IP}",
                            self.n,
                            r.peer.ip()
                        ));
                    }
                    let token = r
                        .headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.ends_with(self.v2_token));
                    println!(
                        "    upstream saw {} {} from {} with {}",
                        r.method,
                        r.path_and_query,
                        r.peer.ip(),
                        if token { "the v2 token" } else { "NO v2 token" }
                    );
                }
            }
        }
        if answer.status != want {
            return Err(format!(
                "step {} ({what}): expected {want}, got {}: {}",
                self.n,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        Ok(answer)
    }
}

async fn drive(client: &ScimClient, upstream: &Upstream, v2_token: &str) -> Result<(), String> {
    let mut s = Step {
        client,
        upstream,
        v2_token,
        n: 0,
    };
    let okta = ("okta ", Some(DEMO_OKTA_TOKEN));
    let entra = ("entra", Some(DEMO_ENTRA_TOKEN));
    let user_name = "jane.doe@example.com";

    s.call(
        "Okta tests the connection",
        okta,
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
        StatusCode::OK,
    )
    .await?;
    let found = s
        .call(
            "Entra looks the user up (spaces as '+', as Entra sends them)",
            entra,
            Method::GET,
            "/SCIM/V2/1234/Users?filter=userName+eq+%22jane.doe%40example.com%22",
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    totalResults = {}", found.json()["totalResults"]);
    let created = s
        .call(
            "Entra creates the user",
            entra,
            Method::POST,
            "/SCIM/V2/1234/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "externalId": "0f4c8e3a-demo",
                "active": true,
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"primary": true, "type": "work", "value": user_name}]
            })),
            StatusCode::CREATED,
        )
        .await?;
    let user_id = created.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if user_id.is_empty() {
        return Err("the create answer has no id".into());
    }
    println!(
        "    id = {user_id}; Location = {}",
        created.header("location").unwrap_or("-")
    );
    s.call(
        "Entra deactivates the user (its default shape: \"Replace\" and the string \"False\")",
        entra,
        Method::PATCH,
        &format!("/SCIM/V2/1234/Users/{user_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        })),
        StatusCode::NO_CONTENT,
    )
    .await?;
    let read = s
        .call(
            "Okta reads the user back",
            okta,
            Method::GET,
            &format!("/SCIM/v2/Users/{user_id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    active = {}", read.json()["active"]);
    let group = s
        .call(
            "Okta pushes a group",
            okta,
            Method::POST,
            "/SCIM/v2/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Netskope Users",
                "members": []
            })),
            StatusCode::CREATED,
        )
        .await?;
    let group_id = group.json()["id"].as_str().unwrap_or_default().to_string();
    s.call(
        "Okta adds the user to the group",
        okta,
        Method::PATCH,
        &format!("/SCIM/v2/Groups/{group_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id, "display": user_name}]}]
        })),
        StatusCode::NO_CONTENT,
    )
    .await?;
    let members = s
        .call(
            "Okta reads the group's members",
            okta,
            Method::GET,
            &format!("/SCIM/v2/Groups/{group_id}?attributes=members"),
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    members = {}", members.json()["members"]);
    s.call(
        "An IdP with a wrong token is refused at the proxy",
        ("?    ", Some("not-a-configured-token")),
        Method::GET,
        "/SCIM/v2/Users",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    s.call(
        "Entra deletes the user",
        entra,
        Method::DELETE,
        &format!("/SCIM/V2/1234/Users/{user_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    s.call(
        "Okta deletes the group",
        okta,
        Method::DELETE,
        &format!("/SCIM/v2/Groups/{group_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    Ok(())
}
