//! A real ACME CA on loopback: Debian's `pebble` (RFC 8555 test CA) and `pebble-challtestsrv` as
//! its DNS, answering every name with 127.0.0.1, so the CA validates against the proxy's own
//! ports. Both are killed on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scim_proxy::lab::devcerts::DevPki;

use super::*;

/// What the CA is set up for.
pub struct PebbleOptions {
    /// Where pebble connects for tls-alpn-01 (the proxy's listen port).
    pub tls_port: u16,
    /// Where pebble connects for http-01 (the proxy's `http_addr` port).
    pub http_port: u16,
    /// Lifetime of the certificates it issues.
    pub validity: Duration,
    /// External Account Binding required, with this key id and base64url HMAC key.
    pub eab: Option<(String, String)>,
}

impl PebbleOptions {
    pub fn new(tls_port: u16, http_port: u16) -> PebbleOptions {
        PebbleOptions {
            tls_port,
            http_port,
            validity: Duration::from_secs(90 * 86_400),
            eab: None,
        }
    }
}

pub struct Pebble {
    pebble: ChildGuard,
    challtestsrv: ChildGuard,
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA of pebble's own HTTPS certificate (the proxy's `listen.acme.ca_file`).
    pub https_ca: PathBuf,
    https_ca_pem: String,
    management: SocketAddr,
}

impl Pebble {
    /// Starts both; started again (at most 3 times in all) when a port it was given was taken by
    /// another test between choosing and binding it.
    pub async fn start(options: PebbleOptions) -> Pebble {
        for attempt in 1.. {
            match Pebble::try_start(&options).await {
                Ok(started) => return started,
                Err(log) if attempt < 3 && log.contains("address already in use") => continue,
                Err(log) => panic!("pebble did not start:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics by its third attempt")
    }

    async fn try_start(options: &PebbleOptions) -> Result<Pebble, String> {
        let dir = tempfile::Builder::new()
            .prefix("scim-proxy-pebble-")
            .tempdir()
            .expect("temp dir");
        let pki = DevPki::new("pebble HTTPS test CA").expect("CA");
        let cert = pki
            .issue(&["localhost"], &[Ipv4Addr::LOCALHOST.into()])
            .expect("pebble certificate");
        let https_ca = write_file(dir.path(), "pebble-https-ca.pem", pki.ca_pem());
        let cert_path = write_file(dir.path(), "pebble.crt", &cert.cert_pem);
        let key_path = write_private(dir.path(), "pebble.key", &cert.key_pem);
        let [acme_port, management_port, dns_port, challtest_management] = unused_ports().await;
        let mut mac_keys = serde_json::Map::new();
        if let Some((kid, key)) = &options.eab {
            mac_keys.insert(kid.clone(), key.clone().into());
        }
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.eab.is_some(),
            "externalAccountMACKeys": mac_keys,
            "certificateValidityPeriod": options.validity.as_secs(),
        }});
        let config_path = write_file(dir.path(), "pebble.json", &config.to_string());
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let challtestsrv = ChildGuard(Some(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{challtest_management}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err"))
                .spawn()
                .expect("start pebble-challtestsrv (tests/run.sh installs the pebble package)"),
        ));
        let pebble = ChildGuard(Some(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdin(Stdio::null())
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err"))
                .spawn()
                .expect("start pebble (tests/run.sh installs the pebble package)"),
        ));
        let mut started = Pebble {
            pebble,
            challtestsrv,
            dir,
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            https_ca,
            https_ca_pem: pki.ca_pem().to_string(),
            management: SocketAddr::from((Ipv4Addr::LOCALHOST, management_port)),
        };
        for port in [challtest_management, acme_port, management_port] {
            started.wait_listening(port).await?;
        }
        Ok(started)
    }

    async fn wait_listening(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_err()
        {
            let exited = |child: &mut ChildGuard| child.child().try_wait().ok().flatten().is_some();
            if exited(&mut self.pebble) || exited(&mut self.challtestsrv) {
                return Err(format!("pebble or its DNS exited:\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!("pebble not listening on {port}:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The root the issued chains lead to (pebble makes a new one per run).
    pub async fn root_pem(&self) -> String {
        let answer = raw_tls_exchange(
            self.management,
            &self.https_ca_pem,
            b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("pebble management /roots/0");
        assert_eq!(answer.status, 200, "{answer:?}");
        String::from_utf8(answer.body.to_vec()).expect("PEM")
    }

    /// What pebble and challtestsrv wrote, for failure messages.
    pub fn log(&self) -> String {
        [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            format!("--- {f}\n{text}")
        })
        .collect()
    }

    /// Stops the CA (the proxy must keep serving what it holds).
    pub fn stop(&mut self) {
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            if let Some(mut c) = child.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
