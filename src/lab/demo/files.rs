//! What the demo writes into its own temporary directory: keys and tokens readable by their
//! owner only, and the proxy config that names them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{DEMO_EGRESS_IP, DEMO_ENTRA_TOKEN, DEMO_OKTA_TOKEN};

pub(super) fn demo_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("scim-proxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

pub(super) fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Keys and tokens are readable by their owner only.
pub(super) fn write_private(path: &Path, text: &str) -> Result<(), String> {
    write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("restricting {}: {e}", path.display()))?;
    }
    Ok(())
}

pub(super) fn demo_config(listen: SocketAddr, upstream: SocketAddr) -> String {
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
max_requests_per_second = 50   # pacing towards the tenant's rate limit, shared by both IdPs

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
