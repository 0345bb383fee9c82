//! Ports and local addresses.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::net::TcpListener;

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn unused_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Whether this host can bind `ip` (i.e. the address is configured here).
pub fn can_bind(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

pub const EGRESS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
/// tinyproxy's `BasicAuth` takes `[-a-z0-9._]+` for both parts.
pub const FWD_USER: &str = "scim-egress";
pub const FWD_PASS: &str = "fwd-pass-7f3a9c2e";
pub const FWD_WRONG_PASS: &str = "fwd-wrong-41d8b6";
/// How long one `check --live` run may take before the test fails.
pub const CHECK_LIMIT: Duration = Duration::from_secs(30);
