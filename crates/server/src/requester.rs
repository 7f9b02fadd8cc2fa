//! Who sent a request: the client's IP address, for rate limiting.
//!
//! The TCP peer is the client unless it is one of `http.trusted_proxies`;
//! then `X-Forwarded-For` is read from the right, skipping trusted proxies,
//! and the first untrusted address is the client. An address in
//! `X-Forwarded-For` from an untrusted peer is ignored (anyone can send the
//! header). A UNIX socket peer is a local process (the reverse proxy), so it
//! counts as trusted. Requests that reach the router without a connection
//! (in-process tests) are [`Requester::Unknown`], which the limiters share
//! as one key.

use std::{
    convert::Infallible,
    fmt,
    net::{IpAddr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Extensions, HeaderMap, request::Parts},
};

use crate::AppState;

/// Marks requests that came in on a UNIX socket (inserted by the listener).
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer;

/// One entry of `http.trusted_proxies`: an address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix): (IpAddr, Option<u8>) = match s.split_once('/') {
            None => (s.trim().parse().ok()?, None),
            Some((a, p)) => (a.trim().parse().ok()?, Some(p.trim().parse().ok()?)),
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return None;
        }
        let canonical = addr.to_canonical();
        let prefix = if canonical.is_ipv4() && addr.is_ipv6() {
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
            prefix.checked_sub(96)?
        } else {
            prefix
        };
        Some(Self {
            addr: canonical,
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), 32, self.prefix)
                    == masked(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide address.
fn masked(value: u128, bits: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    value.checked_shr(host_bits).unwrap_or(0)
}

/// `http.trusted_proxies`, parsed. Entries that do not parse are skipped
/// (config validation refuses them at startup).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Self {
        Self(
            entries
                .iter()
                .filter_map(|e| Cidr::parse(e.as_ref()))
                .collect(),
        )
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer` (`None` for a UNIX socket peer,
    /// which is trusted) carrying `headers`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut current = peer.map(|p| p.to_canonical());
        if current.is_some_and(|ip| !self.contains(ip)) {
            return current;
        }
        // Every X-Forwarded-For line, in order, as one list (RFC 9110 §5.3:
        // repeated fields are a comma-separated list).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            // A hop that does not parse was not written by a trusted proxy:
            // the last trusted one is the best we know.
            let Some(ip) = parse_hop(hop) else {
                return current;
            };
            current = Some(ip);
            if !self.contains(ip) {
                return current;
            }
        }
        current
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requester {
    Ip(IpAddr),
    /// No connection information (in-process requests, or a UNIX socket
    /// without `X-Forwarded-For`).
    Unknown,
}

impl Requester {
    /// The requester of a request with these extensions and headers.
    pub fn of(proxies: &TrustedProxies, extensions: &Extensions, headers: &HeaderMap) -> Self {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if peer.is_none() && extensions.get::<UnixPeer>().is_none() {
            return Self::Unknown;
        }
        proxies
            .client_ip(peer, headers)
            .map_or(Self::Unknown, Self::Ip)
    }

    /// The rate-limiting key: the address, or for IPv6 its /64 network (one
    /// host usually holds a whole /64, so single addresses cost nothing to
    /// change).
    pub fn limit_key(&self) -> String {
        match self {
            Self::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Self::Ip(IpAddr::V6(ip)) => {
                let net = u128::from(*ip) & !(u128::from(u64::MAX));
                format!("{}/64", std::net::Ipv6Addr::from(net))
            }
            Self::Unknown => "unknown".to_owned(),
        }
    }
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

impl FromRequestParts<AppState> for Requester {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(
            &state.trusted_proxies,
            &parts.extensions,
            &parts.headers,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_membership() {
        let p = proxies();
        assert!(p.contains(ip("10.1.2.3")));
        assert!(p.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")), "a single address");
        assert!(p.contains(ip("fd12::1")));
        assert!(!p.contains(ip("fe80::1")));
        assert!(TrustedProxies::parse(&["0.0.0.0/0"]).contains(ip("8.8.8.8")));
        assert!(!TrustedProxies::parse(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
        assert!(TrustedProxies::parse(&["::ffff:10.0.0.0/104"]).contains(ip("10.9.9.9")));
        assert!(
            TrustedProxies::parse(&["banana", "10.0.0.0/33"])
                .0
                .is_empty()
        );
    }

    #[test]
    fn xff_only_from_trusted_peers() {
        let p = proxies();
        // An untrusted peer's header is ignored.
        assert_eq!(
            p.client_ip(Some(ip("203.0.113.9")), &xff(&["198.51.100.1"])),
            Some(ip("203.0.113.9"))
        );
        // A trusted peer: the rightmost untrusted hop is the client, even
        // when the client prepended a spoofed address.
        assert_eq!(
            p.client_ip(
                Some(ip("127.0.0.1")),
                &xff(&["1.1.1.1, 198.51.100.7", "10.0.0.2"])
            ),
            Some(ip("198.51.100.7"))
        );
        // No header from a trusted peer: the peer itself.
        assert_eq!(
            p.client_ip(Some(ip("::ffff:127.0.0.1")), &HeaderMap::new()),
            Some(ip("127.0.0.1"))
        );
        // Only trusted hops: the leftmost.
        assert_eq!(
            p.client_ip(Some(ip("127.0.0.1")), &xff(&["10.0.0.5, 10.0.0.6"])),
            Some(ip("10.0.0.5"))
        );
        // Garbage next to the proxy: the proxy.
        assert_eq!(
            p.client_ip(Some(ip("127.0.0.1")), &xff(&["198.51.100.7, nonsense"])),
            Some(ip("127.0.0.1"))
        );
        // With ports, and from a UNIX socket (trusted, no address).
        assert_eq!(
            p.client_ip(None, &xff(&["[2001:db8::5]:443"])),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(p.client_ip(None, &HeaderMap::new()), None);
    }

    #[test]
    fn keys() {
        assert_eq!(Requester::Ip(ip("192.0.2.1")).limit_key(), "192.0.2.1");
        assert_eq!(
            Requester::Ip(ip("2001:db8:1:2:3:4:5:6")).limit_key(),
            Requester::Ip(ip("2001:db8:1:2::9")).limit_key(),
            "one /64"
        );
        assert_ne!(
            Requester::Ip(ip("2001:db8:1:2::1")).limit_key(),
            Requester::Ip(ip("2001:db8:1:3::1")).limit_key()
        );
        assert_eq!(Requester::Unknown.limit_key(), "unknown");
        let mut ext = Extensions::new();
        assert_eq!(
            Requester::of(&proxies(), &ext, &xff(&["198.51.100.1"])),
            Requester::Unknown,
            "no connection: XFF is not believed"
        );
        ext.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5))));
        assert_eq!(
            Requester::of(&proxies(), &ext, &xff(&["198.51.100.1"])),
            Requester::Ip(ip("198.51.100.1"))
        );
    }
}
