//! The client's address, as far as it can be believed.
//!
//! Behind a load balancer every request comes from the balancer's address,
//! so keying anything on the TCP peer (the `anonymous` quota, logs, spans)
//! puts every client in one bucket. The balancer says who its client was in
//! `X-Forwarded-For` (or `Forwarded`, RFC 7239), but so can anyone: a
//! client writes whatever it likes there. So the header is read only as far
//! as it was written by proxies this BFF trusts (`BFF_TRUSTED_PROXIES`,
//! CIDRs): from the peer, right to left, each hop is believed only when the
//! hop after it is a trusted proxy, and the first address that is not a
//! trusted proxy is the client. A peer that is not trusted is the client
//! itself, whatever it sent. With no trusted proxy (the default) headers
//! are never looked at.
//!
//! Only one header is read (`BFF_CLIENT_ADDRESS_HEADER`: `x-forwarded-for`
//! by default, or `forwarded`): a balancer that writes one of them passes
//! the other through from the client untouched, so believing both would let
//! a client choose its own address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::{HeaderMap, HeaderName, header};
use ipnet::IpNet;

/// The address of the request's client: the TCP peer, or what trusted
/// proxies said the client was (a request extension, set at the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// The header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de-facto standard).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err("expected x-forwarded-for or forwarded".to_owned()),
        }
    }
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => header::FORWARDED,
        }
    }

    /// The address of one hop of the header, or `None` when the hop names
    /// none (`unknown`, an obfuscated `_name`, garbage).
    fn hop(self, element: &str) -> Option<IpAddr> {
        let node = match self {
            ForwardedHeader::XForwardedFor => element.trim(),
            ForwardedHeader::Forwarded => element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            })?,
        };
        parse_node(node).map(|ip| ip.to_canonical())
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// The proxies whose word on the client's address is taken
/// (`BFF_TRUSTED_PROXIES`), and the header they write it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses comma-separated CIDRs or single addresses
    /// (`10.0.0.0/8, 192.168.1.7`); blank is none.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let nets = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("{s:?} is not an address or CIDR such as 10.0.0.0/8 or fd00::/8")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies {
            nets,
            header: ForwardedHeader::default(),
        })
    }

    /// The same proxies, naming the client in `header`.
    #[must_use]
    pub fn in_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether no proxy is trusted (the peer is always the client).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers`: the peer unless
    /// it is a trusted proxy; else the header's hops right to left, up to
    /// the first that is not a trusted proxy. A hop that names no address
    /// ends the walk at the trusted proxy that wrote it; when every hop is a
    /// trusted proxy, the leftmost is the client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for value in headers.get_all(self.header.name()).iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for element in value.rsplit(',') {
                let Some(hop) = self.header.hop(element) else {
                    return client;
                };
                client = hop;
                if !self.trusts(hop) {
                    return client;
                }
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn proxies_parse_or_say_why_not() {
        let p = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,").expect("valid");
        assert!(p.trusts(ip("10.1.2.3")));
        assert!(p.trusts(ip("192.168.1.7")));
        assert!(!p.trusts(ip("192.168.1.8")));
        assert!(p.trusts(ip("fd00::1")));
        assert!(p.trusts(ip("::ffff:10.9.9.9")), "IPv4-mapped peers");
        assert!(TrustedProxies::parse("").expect("blank").is_empty());
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "1.2.3.4/"] {
            let error = TrustedProxies::parse(bad).expect_err(bad);
            assert!(error.contains("CIDR"), "{error}");
        }
        assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        let forged = headers("x-forwarded-for", &["1.1.1.1, 10.0.0.1"]);
        assert_eq!(p.client(ip("203.0.113.9"), &forged), ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), &forged), ip("10.0.0.1"));
    }

    #[test]
    fn hops_are_believed_right_to_left_across_trusted_proxies_only() {
        let p = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        let peer = ip("10.0.0.2");
        // The client forged "6.6.6.6"; the balancer appended its peer.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(p.client(peer, &h), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let h = headers(
            "x-forwarded-for",
            &["6.6.6.6", "198.51.100.7:5555", "10.0.0.5"],
        );
        assert_eq!(p.client(peer, &h), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(p.client(peer, &HeaderMap::new()), peer);
        // Every hop trusted: the leftmost.
        let h = headers("x-forwarded-for", &["10.1.1.1, 10.0.0.5"]);
        assert_eq!(p.client(peer, &h), ip("10.1.1.1"));
        // A hop naming nothing stops at the proxy that wrote it.
        let h = headers("x-forwarded-for", &["198.51.100.7, garbage, 10.0.0.5"]);
        assert_eq!(p.client(peer, &h), ip("10.0.0.5"));
        // Forwarded is not read when X-Forwarded-For is the header.
        let h = headers("forwarded", &["for=198.51.100.7"]);
        assert_eq!(p.client(peer, &h), peer);
    }

    #[test]
    fn forwarded_elements_name_their_for_parameter() {
        let p = TrustedProxies::parse("10.0.0.0/8")
            .expect("valid")
            .in_header(ForwardedHeader::Forwarded);
        let peer = ip("10.0.0.2");
        let h = headers(
            "forwarded",
            &[r#"for=6.6.6.6, For="[2001:db8::7]:4711";proto=https, for=10.0.0.5;by=10.0.0.2"#],
        );
        assert_eq!(p.client(peer, &h), ip("2001:db8::7"));
        let h = headers("forwarded", &["for=198.51.100.7, for=_hidden"]);
        assert_eq!(p.client(peer, &h), peer, "an obfuscated hop names nobody");
        let h = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(p.client(peer, &h), peer, "only Forwarded is read");
    }
}
