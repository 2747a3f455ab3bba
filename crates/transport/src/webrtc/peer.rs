//! Building one peer connection with this transport's settings.

use std::{sync::Arc, time::Duration};

use rtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
    SettingEngineBuilder,
};

use super::{
    WebRtcTransportFactory,
    events::Forwarder,
    interfaces::local_addresses,
    runtime::BufferedRuntime,
    session::failed,
    stream::{HIGH_WATER, MESSAGE_SIZE},
};
use crate::TransportError;

/// Pause between ICE connectivity checks (webrtc's default is 200 ms): a check that misses the
/// remote's first answer is repeated soon, and a peer-reflexive path is nominated on the next.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Checks per candidate pair before it is given up. With the faster interval this keeps about
/// the default's patience (7 checks × 200 ms), plus headroom for slow paths: 150 × 20 ms = 3 s.
const ICE_CHECKS: u16 = 150;

/// Silence after which ICE calls a path disconnected (webrtc's default).
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(5);

/// Further silence after which ICE gives up: a connection that never got through, or lost its
/// path, fails after 10 s in all (webrtc's default is 30 s), as long as the swarm's connect
/// timeout, so a dead peer frees its slot as soon as the swarm would give up on it anyway.
const ICE_FAILED_AFTER: Duration = Duration::from_secs(5);

/// webrtc's own bound on a data channel's buffered bytes, behind the stream's high-water mark
/// (which the stream checks before each message of at most 64 KiB): it only matters if the
/// stream's check is ever bypassed.
const SEND_BUFFER: usize = HIGH_WATER + 2 * MESSAGE_SIZE;

/// A peer connection that reports to `handler` and runs on `runtime` (one per connection).
pub(super) async fn build_peer(
    config: &WebRtcTransportFactory,
    handler: Forwarder,
    runtime: Arc<BufferedRuntime>,
) -> Result<Arc<dyn PeerConnection>, TransportError> {
    let ice_servers = config
        .ice_servers
        .iter()
        .map(|server| RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone().unwrap_or_default(),
            credential: server.credential.clone().unwrap_or_default(),
        })
        .collect();
    let mut settings = SettingEngineBuilder::new();
    if config.relay_only {
        // ICE waits 2 s for something better before it settles on a relayed pair; with relays
        // only, nothing better comes.
        settings = settings.with_relay_acceptance_min_wait(Some(Duration::ZERO));
    }
    let settings = settings
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS))
        .with_ice_timeouts(Some(ICE_DISCONNECTED_AFTER), Some(ICE_FAILED_AFTER), None)
        // A check can arrive before the candidate it comes from (trickling races the checks);
        // ICE then knows that address as peer-reflexive and by default waits 1 s before it
        // settles on it, though it is as direct a path as any.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        // webrtc opens a multicast socket for mDNS by default, and peer connection creation
        // fails ("No such device") on a host without a multicast route. Host candidates are
        // plain addresses here, and remote `.local` candidates (a browser hiding its addresses)
        // cannot be resolved across machines anyway.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let policy = if config.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .with_ice_transport_policy(policy)
        .build();
    let udp_bind = if config.udp_bind.is_empty() { local_addresses() } else { config.udp_bind.clone() };
    let peer = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(settings)
        .with_handler(Arc::new(handler))
        .with_runtime(runtime)
        .with_udp_addrs(udp_bind)
        .with_data_channel_send_buffer_limit(SEND_BUFFER)
        .build()
        .await
        .map_err(|err| failed("creating the peer connection", err))?;
    Ok(Arc::new(peer))
}
