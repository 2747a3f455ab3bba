//! The local addresses a peer connection binds when none are configured.
//!
//! One UDP socket (and host candidate) per address of every interface that is up, loopback
//! included: a host with only loopback, or only IPv6, then connects as well as one with a
//! network, and two peers on one machine find each other without one. webrtc's own wildcard
//! expansion skips loopback and, on a host with no other interface, binds the wildcard itself,
//! whose `0.0.0.0` candidate nobody can reach.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tracing::debug;

/// The addresses to bind: every interface address, except link-local ones (meaningless to a
/// remote peer without a scope id). When the interfaces cannot be listed, the IPv4 wildcard,
/// which webrtc expands itself.
pub(crate) fn local_addresses() -> Vec<SocketAddr> {
    let interfaces = match rtc::shared::ifaces::ifaces() {
        Ok(interfaces) => interfaces,
        Err(err) => {
            debug!(%err, "cannot list network interfaces; binding the wildcard");
            return vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))];
        }
    };
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for address in interfaces.into_iter().filter_map(|interface| interface.addr) {
        let address = SocketAddr::new(address.ip(), 0);
        if usable(address.ip()) && !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    addresses
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_link_local(),
        // fe80::/10
        IpAddr::V6(ip) => !ip.is_unspecified() && (ip.segments()[0] & 0xffc0) != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_among_the_addresses_and_link_local_is_not() {
        let addresses = local_addresses();
        assert!(addresses.iter().any(|address| address.ip().is_loopback()), "{addresses:?}");
        assert!(addresses.iter().all(|address| usable(address.ip()) && address.port() == 0));
        assert!(!usable("169.254.1.1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
        assert!(!usable("fe80::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
    }
}
