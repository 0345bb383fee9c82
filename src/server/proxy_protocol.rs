//! PROXY protocol v1/v2 (HAProxy) on connections from trusted load balancers: the real client address.
//!
//! The header is read exactly (v1 up to its CRLF, v2 by its length field), so no byte of the TLS
//! handshake that follows is consumed and no rewind buffer is needed.

use std::net::SocketAddr;

use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes including CRLF.
const V1_MAX: usize = 107;
/// v2 TLVs can be large in theory; nothing we need comes close.
const V2_MAX_PAYLOAD: usize = 4096;

/// The source address a PROXY header names; `None` for `UNKNOWN` / `LOCAL` (health checks).
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, String> {
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("reading the PROXY header: {e}"))?;
    if head == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream
            .read_exact(&mut fixed)
            .await
            .map_err(|e| format!("reading the PROXY v2 header: {e}"))?;
        let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if len > V2_MAX_PAYLOAD {
            return Err(format!("PROXY v2 header of {len} bytes is too long"));
        }
        let mut buf = Vec::with_capacity(16 + len);
        buf.extend_from_slice(&head);
        buf.extend_from_slice(&fixed);
        buf.resize(16 + len, 0);
        stream
            .read_exact(&mut buf[16..])
            .await
            .map_err(|e| format!("reading the PROXY v2 header: {e}"))?;
        return parse_v2(&buf);
    }
    if !head.starts_with(b"PROXY ") {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    let mut buf = head.to_vec();
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= V1_MAX {
            return Err("PROXY v1 header longer than 107 bytes".into());
        }
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| format!("reading the PROXY v1 header: {e}"))?;
        buf.push(byte[0]);
    }
    parse_v1(&buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<SocketAddr>, String> {
    let text = std::str::from_utf8(buf).map_err(|_| "PROXY v1 header is not ASCII".to_string())?;
    let header = v1::Header::try_from(text).map_err(|e| format!("invalid PROXY v1 header: {e}"))?;
    Ok(match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Option<SocketAddr>, String> {
    let header = v2::Header::try_from(buf).map_err(|e| format!("invalid PROXY v2 header: {e}"))?;
    if header.command == v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let r = read_header(&mut cursor).await;
        let pos = usize::try_from(cursor.position()).unwrap();
        (r, bytes[pos..].to_vec())
    }

    #[tokio::test]
    async fn v1_reads_exactly_the_header() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\n\x16\x03\x01").await;
        assert_eq!(r.unwrap(), Some("203.0.113.9:51234".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        let (r, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::1]:4000".parse().unwrap()));
        let (r, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(r.unwrap(), None);
    }

    #[tokio::test]
    async fn v2_reads_exactly_the_header() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.7:40000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r.unwrap(), Some("198.51.100.7:40000".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"[..],
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 and a lot more text that keeps going past the limit of one hundred and seven bytes\r\n",
            b"PROXY",
        ] {
            assert!(read(bad).await.0.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
