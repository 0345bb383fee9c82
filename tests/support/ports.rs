//! Ports and local addresses.

use std::net::{IpAddr, Ipv4Addr};

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

/// `N` distinct ports on 127.0.0.1 with nothing listening: all are held until every one is chosen,
/// so no two are the same (another test may still take one before its user binds it).
pub async fn unused_ports<const N: usize>() -> [u16; N] {
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        held.push(
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind"),
        );
    }
    std::array::from_fn(|i| held[i].local_addr().expect("addr").port())
}

/// Whether this host can bind `ip` (i.e. the address is configured here).
pub fn can_bind(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The loopback address the egress tests send from (`bind_ip`).
pub const EGRESS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
