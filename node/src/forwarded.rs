//! The client's address behind reverse proxies: `X-Forwarded-For` and `Forwarded` (RFC 7239)
//! are believed only when the connection comes from a configured trusted proxy, and then only
//! as far back as the chain stays within trusted proxies, so a client cannot choose its own
//! address by sending the header itself.

use axum::http::{header, HeaderMap};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The proxies whose forwarding headers are believed (`trusted_proxies` in the config file):
/// addresses (`10.0.0.7`) or networks (`10.0.0.0/8`, `fd00::/8`). Empty: none, the connection's
/// own address is the client's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(entries: Vec<String>) -> Result<Self, String> {
        entries.iter().map(|entry| parse_network(entry)).collect::<Result<_, _>>().map(Self)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(proxies: TrustedProxies) -> Self {
        proxies.0.iter().map(IpNet::to_string).collect()
    }
}

fn parse_network(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(network) = entry.parse::<IpNet>() {
        return Ok(network.trunc());
    }
    entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("trusted_proxies: {entry:?} is not an IP address or network (e.g. 10.0.0.0/8)")
    })
}

impl TrustedProxies {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address for a request that came from `peer` with `headers`: `peer` itself
    /// unless it is a trusted proxy; else, walking the forwarded-for chain from the nearest
    /// hop, the first address that is not a trusted proxy (the farthest one when all are).
    /// A hop that is not an address (`unknown`, an obfuscated name) ends the walk: the last
    /// trusted address before it is the answer, as nothing behind it can be believed.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for(headers).iter().rev() {
            match hop {
                Some(address) => {
                    client = address.to_canonical();
                    if !self.contains(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// The addresses a request was forwarded for, farthest first: from `Forwarded` when present,
/// else from `X-Forwarded-For`. `None` for a hop that is not an IP address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> =
        headers.get_all(header::FORWARDED).iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(node))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(parse_node)
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.60`, `"192.0.2.60:4711"`,
/// `"[2001:db8::17]:4711"` or a bare `2001:db8::17`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(address, _)| address.parse().ok());
    }
    let (address, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::try_from(entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .expect("valid proxies")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies(&[]).client_address(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        let h = headers(&[("forwarded", "for=203.0.113.9")]);
        assert_eq!(
            proxies(&["10.0.0.0/8"]).client_address(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // The client's own claim (leftmost) is not believed past the first untrusted hop.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Several header lines are one list.
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Only trusted hops: the farthest.
        let h = headers(&[("x-forwarded-for", "10.0.0.2, 10.0.0.3")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("10.0.0.2"));
        // No header: the proxy itself.
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_is_read_and_preferred() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let h = headers(&[
            ("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https, For=192.0.2.60:8080"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn a_hop_that_is_not_an_address_stops_the_walk() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.5")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let trusted = proxies(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(trusted.client_address(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        let error =
            TrustedProxies::try_from(vec!["10.0.0.0/33".to_string()]).expect_err("bad prefix");
        assert!(error.contains("10.0.0.0/33"), "{error}");
        let error = TrustedProxies::try_from(vec!["proxy.local".to_string()]).expect_err("a name");
        assert!(error.contains("proxy.local"), "{error}");
        let parsed: Vec<String> = proxies(&["10.1.2.3/8", "::1"]).into();
        assert_eq!(parsed, vec!["10.0.0.0/8".to_string(), "::1/128".to_string()]);
    }
}
