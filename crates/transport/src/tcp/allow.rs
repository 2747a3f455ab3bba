//! Which addresses a signalled `{port, host}` may make this peer dial.
//!
//! Signals come from the remote through the signal server, so a host in a signal is remote
//! input: without a check, whoever can send this peer a signal could make it connect anywhere.
//! The default allows loopback only, which is all DXOS's same-host TCP transport ever dials.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

/// Why text is not an [`IpNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNetworkError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The part after `/` is not a prefix length for that address family.
    #[error("{0:?} is not a prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    Prefix(String),
}

impl IpNetwork {
    /// The network of `addr`'s first `prefix` bits, or `None` if `prefix` is longer than the
    /// address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        (prefix <= max_prefix(addr)).then_some(Self { addr, prefix })
    }

    /// The network holding only `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self { addr, prefix: max_prefix(addr) }
    }

    /// Whether `ip` is in this network. IPv4 addresses mapped into IPv6 count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Whether the top `prefix` of the low `bits` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl FromStr for IpNetwork {
    type Err = ParseNetworkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| ParseNetworkError::Address(addr.to_owned()))?;
        match prefix {
            None => Ok(Self::host(addr)),
            Some(prefix) => prefix
                .parse()
                .ok()
                .and_then(|prefix| Self::new(addr, prefix))
                .ok_or_else(|| ParseNetworkError::Prefix(prefix.to_owned())),
        }
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The addresses a TCP transport may dial when a signal names them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialAllow {
    /// Any address: for peers that trust everyone who can signal them.
    Any,
    /// Addresses in these networks only.
    Networks(Vec<IpNetwork>),
}

impl DialAllow {
    /// Loopback only (`127.0.0.0/8` and `::1`), the default: same-host links, as DXOS has.
    pub fn loopback() -> Self {
        Self::Networks(vec![
            IpNetwork { addr: Ipv4Addr::LOCALHOST.into(), prefix: 8 },
            IpNetwork::host(Ipv6Addr::LOCALHOST.into()),
        ])
    }

    /// This list with `network` allowed too.
    pub fn with(self, network: IpNetwork) -> Self {
        match self {
            Self::Any => Self::Any,
            Self::Networks(mut networks) => {
                networks.push(network);
                Self::Networks(networks)
            }
        }
    }

    /// Whether `ip` may be dialled.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Networks(networks) => networks.iter().any(|network| network.contains(ip)),
        }
    }
}

impl Default for DialAllow {
    fn default() -> Self {
        Self::loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_default_allows_loopback_only() {
        let allow = DialAllow::default();
        for yes in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(allow.allows(ip(yes)), "{yes}");
        }
        for no in ["192.0.2.2", "10.0.0.1", "0.0.0.0", "::", "fd00::2", "::ffff:10.0.0.1", "128.0.0.1"] {
            assert!(!allow.allows(ip(no)), "{no}");
        }
        assert!(DialAllow::Any.allows(ip("203.0.113.9")));
    }

    #[test]
    fn networks_parse_and_match_by_prefix() {
        let net: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("fd00::1")), "families never match");
        let host: IpNetwork = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6: IpNetwork = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let everything: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        let all_v6: IpNetwork = "::/0".parse().unwrap();
        assert!(all_v6.contains(ip("2001:db8::1")));
        let allow = DialAllow::loopback().with(net);
        assert!(allow.allows(ip("10.1.2.3")) && allow.allows(ip("127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for (bad, expected) in [
            ("example.com", ParseNetworkError::Address("example.com".into())),
            ("10.0.0.0/33", ParseNetworkError::Prefix("33".into())),
            ("::/129", ParseNetworkError::Prefix("129".into())),
            ("10.0.0.0/x", ParseNetworkError::Prefix("x".into())),
            ("", ParseNetworkError::Address(String::new())),
        ] {
            assert_eq!(bad.parse::<IpNetwork>(), Err(expected), "{bad}");
        }
    }
}
