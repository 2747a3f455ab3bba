//! Hosts without a network: in network namespaces of their own, with only loopback and no
//! multicast route, and with only IPv6 loopback, two WebRTC transports on the default factory
//! (every interface that exists, mDNS off) connect and carry data.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use mesh_transport::webrtc::WebRtcTransportFactory;

const PATIENCE: Duration = Duration::from_secs(30);

/// Connects two default transports and sends 64 KiB through.
fn connect_and_send() {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(
        async {
            let (a, b) = common::pair(&WebRtcTransportFactory::default());
            let (mut x, mut y) = common::connect(&a, &b, PATIENCE).await;
            let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
            assert!(
                common::send_through(&mut x, &mut y, &data, PATIENCE).await == data,
                "64 KiB arrived intact"
            );
            a.close().await;
            b.close().await;
        },
    );
}

#[test]
fn a_host_with_only_loopback_and_no_multicast_route() {
    if common::netns::inside() {
        let routes =
            std::process::Command::new("ip").args(["route", "show", "table", "all"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&routes.stdout).contains("224.0.0.0"), "no multicast route here");
        return connect_and_send();
    }
    common::netns::rerun_inside("a_host_with_only_loopback_and_no_multicast_route", &["ip link set lo up"]);
}

#[test]
fn an_ipv6_only_host() {
    if common::netns::inside() {
        return connect_and_send();
    }
    common::netns::rerun_inside(
        "an_ipv6_only_host",
        &["ip link set lo up", "ip addr del 127.0.0.1/8 dev lo", "! ip -4 addr show dev lo | grep -q inet"],
    );
}
