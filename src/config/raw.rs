//! The config file exactly as serde reads it from TOML: every table and key, all optional, no
//! meaning yet. Validation into the model is `validate`'s job.
//!
//! tests/config_example.rs reads the accepted keys from this file as text (lines `struct RawX {`,
//! then `field: Type` up to `}`): keep that shape.

use std::path::PathBuf;

use serde::Deserialize;

/// Declares the `Raw*` structs visible to the rest of `config` (`pub(super)` on each struct and
/// field) while their text keeps the shape the example-config test reads.
macro_rules! raw_tables {
    ($(
        $(#[$meta:meta])*
        struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
        }
    )*) => {$(
        $(#[$meta])*
        pub(super) struct $name {
            $($(#[$field_meta])* pub(super) $field: $ty,)*
        }
    )*};
}

raw_tables! {
    #[derive(Debug, Default, Deserialize)]
    struct RawConfig {
        listen: Option<RawListen>,
        admin: Option<RawAdmin>,
        limits: Option<RawLimits>,
        egress: Option<RawEgress>,
        reload: Option<RawReload>,
        log: Option<RawLog>,
        runtime: Option<RawRuntime>,
        #[serde(default)]
        routes: Vec<RawRoute>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawListen {
        addr: Option<String>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        allow_cidrs: Option<Vec<String>>,
        proxy_protocol: Option<bool>,
        trusted_proxies: Option<Vec<String>>,
        acme: Option<RawAcme>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawAcme {
        domains: Option<Vec<String>>,
        contact: Option<String>,
        directory: Option<String>,
        state_dir: Option<PathBuf>,
        challenge: Option<String>,
        http_addr: Option<String>,
        renew_before: Option<String>,
        eab_kid: Option<String>,
        eab_hmac_key_file: Option<PathBuf>,
        eab_hmac_key_env: Option<String>,
        ca_file: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawLog {
        traffic: Option<String>,
        max_file_bytes: Option<RawSize>,
        keep_files: Option<u64>,
        queue_records: Option<u64>,
        pii: Option<String>,
        pii_key_file: Option<PathBuf>,
        pii_key_env: Option<String>,
        capture_bodies: Option<bool>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawRuntime {
        worker_threads: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawReload {
        watch: Option<bool>,
        interval: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawAdmin {
        addr: Option<String>,
        token_sha256: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawLimits {
        upstream_timeout: Option<String>,
        upstream_connect_timeout: Option<String>,
        upstream_idle_timeout: Option<String>,
        header_read_timeout: Option<String>,
        body_read_timeout: Option<String>,
        tls_handshake_timeout: Option<String>,
        idle_timeout: Option<String>,
        shutdown_grace: Option<String>,
        max_body: Option<RawSize>,
        max_header_bytes: Option<RawSize>,
        max_headers: Option<u64>,
        max_connections: Option<u64>,
        max_requests_per_client: Option<u64>,
        max_concurrent_streams: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawEgress {
        bind_ip: Option<String>,
        ca_file: Option<PathBuf>,
        via_proxy: Option<String>,
        via_proxy_auth_file: Option<PathBuf>,
        via_proxy_auth_env: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawRoute {
        name: Option<String>,
        upstream: Option<String>,
        token_file: Option<PathBuf>,
        token_env: Option<String>,
        hosts: Option<Vec<String>>,
        public_url: Option<String>,
        legacy_tenant_id: Option<String>,
        upstream_auth: Option<String>,
        token_expires: Option<String>,
        token_warn_days: Option<u64>,
        rewrite_body_urls: Option<bool>,
        max_requests_per_second: Option<f64>,
        burst: Option<u64>,
        max_queue_wait: Option<String>,
        #[serde(default)]
        clients: Vec<RawClient>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct RawClient {
        name: Option<String>,
        token_sha256: Option<String>,
        additional_token_sha256: Option<Vec<String>>,
    }
}

/// A size as operators write it: `4194304`, `"4MiB"`, `"512KiB"`, `"1MB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Reads config text into the raw tables, with the path of every key serde did not know.
pub(super) fn read(text: &str) -> Result<(RawConfig, Vec<String>), toml::de::Error> {
    let mut unknown = Vec::new();
    let raw = serde_ignored::deserialize(toml::Deserializer::new(text), |path| {
        unknown.push(key_path(&path));
    })?;
    Ok((raw, unknown))
}

/// `routes[0].clients[1].name`, the way an operator reads a TOML key.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}
