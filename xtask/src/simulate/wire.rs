//! What one broadcast hop costs on the wire, measured through the real Teleport stack.
//!
//! A hop is a gossip announce (`dxos.mesh.teleport.gossip.GossipMessage` in a `dxos.rpc`
//! request to `GossipService.Announce`, as DXOS's gossip extension sends it) on an RPC channel of
//! a real [`Muxer`]: the bytes counted are what the framer, balancer and muxer commands put on the
//! connection, and the receiving muxer must hand back the very message, so a change to any layer
//! changes the figure rather than silently keeping an old estimate.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mesh_keys::PublicKey;
use mesh_proto::{
    Any, Message, Timestamp, any,
    dxos::{
        mesh::teleport::gossip::GossipMessage,
        rpc::{Request, RpcMessage, rpc_message::Content},
    },
};
use mesh_teleport::muxer::{Config, Event, Muxer, RPC_CONTENT_TYPE};

/// The tag of the channel the announce travels on, as the gossip extension's RPC port.
const GOSSIP_TAG: &str = "dxos.mesh.teleport.gossip/rpc";

/// The encoded `dxos.rpc` message announcing a gossip message with `payload` bytes of content.
fn announce(payload: usize) -> Bytes {
    let gossip = GossipMessage {
        peer_id: Some(PublicKey::from_bytes([1; 32]).into()),
        channel_id: "mesh.simulate/broadcast".into(),
        message_id: Some(PublicKey::from_bytes([2; 32]).into()),
        timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 123_456_789 }),
        payload: Some(Any { type_url: "mesh.simulate.Broadcast".into(), value: vec![0xb5; payload] }),
    };
    let request = Request {
        id: Some(1),
        method: "dxos.mesh.teleport.gossip.GossipService.Announce".into(),
        payload: Some(any::pack_request(&gossip)),
        stream: Some(false),
    };
    RpcMessage { content: Some(Content::Request(request)) }.encode_to_vec().into()
}

/// Moves everything `from` has to send into `to`; returns the bytes moved.
fn deliver(now: Instant, from: &mut Muxer, to: &mut Muxer) -> usize {
    let mut moved = 0;
    let mut out = BytesMut::new();
    while from.poll_transmit(&mut out, 64 << 10) {
        moved += out.len();
        to.handle_input(now, &out);
        out.clear();
    }
    moved
}

/// Bytes on the connection for one announce carrying `payload` bytes.
pub(crate) fn announce_bytes(payload: usize) -> Result<usize, String> {
    let now = Instant::now();
    let config = Config::default();
    if payload + 1024 > config.max_message_size {
        return Err(format!(
            "--message-bytes: at most {} bytes fit one Teleport message",
            config.max_message_size - 1024
        ));
    }
    let (mut sender, mut receiver) = (Muxer::new(config.clone()), Muxer::new(config));
    let channel = sender.open_channel(GOSSIP_TAG, Some(RPC_CONTENT_TYPE)).map_err(|e| e.to_string())?;
    receiver.open_channel(GOSSIP_TAG, Some(RPC_CONTENT_TYPE)).map_err(|e| e.to_string())?;
    deliver(now, &mut sender, &mut receiver);
    deliver(now, &mut receiver, &mut sender);
    while receiver.poll_event().is_some() {}
    let message = announce(payload);
    sender.send(channel, message.clone()).map_err(|e| e.to_string())?;
    let bytes = deliver(now, &mut sender, &mut receiver);
    let arrived = std::iter::from_fn(|| receiver.poll_event()).find_map(|event| match event {
        Event::Data { data, .. } => Some(data.into_bytes()),
        _ => None,
    });
    if arrived.as_ref() != Some(&message) {
        return Err("the Teleport muxer did not deliver the broadcast message intact".into());
    }
    Ok(bytes)
}

/// The time `bytes` take to leave a peer at `bits_per_second` (none when unlimited).
pub(crate) fn send_time(bytes: usize, bits_per_second: Option<u64>) -> Duration {
    bits_per_second
        .map_or(Duration::ZERO, |rate| Duration::from_secs_f64(bytes as f64 * 8.0 / rate.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announce_costs_its_payload_plus_teleport_and_rpc_overhead() {
        let small = announce_bytes(1).unwrap();
        let large = announce_bytes(100_000).unwrap();
        assert!(small > 100 && small < 400, "{small}");
        // Chunks of at most 8 KiB each add a frame header and a channel id.
        let overhead = large - 100_000;
        assert!(overhead > small && overhead < small + 13 * 8, "{overhead}");
        assert!(announce_bytes(8 << 20).is_err());
    }

    #[test]
    fn send_time_follows_the_rate() {
        assert_eq!(send_time(1250, Some(10_000)), Duration::from_secs(1));
        assert_eq!(send_time(1250, None), Duration::ZERO);
    }
}
