//! Loss: in a network namespace of its own where nftables drops 10% of UDP datagrams at random,
//! two WebRTC transports still connect (within three attempts, as a swarm retries), and 1 MiB
//! crosses intact (SCTP retransmits what is lost).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use mesh_transport::webrtc::WebRtcTransportFactory;

/// Generous: SCTP in webrtc 0.21 waits at least 1 s (its fixed minimum retransmission timeout,
/// doubled on repeats) whenever a loss is not repaired by fast retransmit, and at 10% loss that
/// happens often enough that 1 MiB takes about a minute on loopback.
const PATIENCE: Duration = Duration::from_secs(240);

/// Connection attempts before the test gives up. Through 10% loss, about one attempt in twenty
/// fails its ICE or DTLS handshake (webrtc 0.21 retransmits a DTLS flight at most 7 times, a fixed
/// second apart), and the swarm above reconnects with backoff; so does this test.
const ATTEMPTS: usize = 3;

/// Loopback up, and one datagram in ten dropped on its way out (each one leaves once on `lo`).
const LOSSY_LOOPBACK: [&str; 4] = [
    "ip link set lo up",
    "nft add table inet loss",
    "nft add chain inet loss out '{ type filter hook output priority 0; }'",
    "nft add rule inet loss out meta l4proto udp numgen random mod 10 0 drop",
];

#[test]
fn one_mib_crosses_intact_with_ten_percent_of_datagrams_dropped() {
    if !common::netns::inside() {
        common::netns::rerun_inside(
            "one_mib_crosses_intact_with_ten_percent_of_datagrams_dropped",
            &LOSSY_LOOPBACK,
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(
        async {
            let ((a, b), (mut x, mut y)) = connect_retrying().await;
            let started = std::time::Instant::now();
            let data: Vec<u8> =
                (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
            let received = common::send_through(&mut x, &mut y, &data, PATIENCE).await;
            assert!(received == data, "1 MiB arrived intact");
            eprintln!("1 MiB through 10% loss in {:?}", started.elapsed());
            a.close().await;
            b.close().await;
        },
    );
}

/// Connects a fresh pair of transports, retrying a failed handshake as the swarm would.
async fn connect_retrying() -> (
    (std::sync::Arc<dyn mesh_transport::Transport>, std::sync::Arc<dyn mesh_transport::Transport>),
    (mesh_transport::ByteStream, mesh_transport::ByteStream),
) {
    for attempt in 1..=ATTEMPTS {
        let (a, b) = common::pair(&WebRtcTransportFactory::default());
        a.open().await.unwrap();
        b.open().await.unwrap();
        let both = tokio::time::timeout(PATIENCE, async { tokio::join!(a.connected(), b.connected()) });
        match both.await.expect("each attempt ends in time") {
            (Ok(x), Ok(y)) => return ((a, b), (x, y)),
            (x, y) => {
                eprintln!("attempt {attempt} failed: {:?} / {:?}", x.err(), y.err());
                a.close().await;
                b.close().await;
            }
        }
    }
    panic!("{ATTEMPTS} connection attempts through 10% loss all failed");
}
