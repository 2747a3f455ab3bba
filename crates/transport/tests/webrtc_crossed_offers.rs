//! Crossed offers: a remote that offers although DXOS's rule makes this side the offerer (as a
//! peer that makes the swarm initiator the offerer does). The transport yields as a polite
//! browser peer does — rolls its offer back, answers, takes the remote's channel — and connects.
//! The remote here is a bare webrtc peer connection that offers and ignores offers.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::Struct;
use mesh_transport::{SignalSink, TransportFactory, TransportOptions, webrtc::WebRtcTransportFactory};
use rtc::ice::mdns::MulticastDnsMode;
use tokio::{io::AsyncReadExt, sync::mpsc};
use webrtc::{
    data_channel::DataChannelEvent,
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
        RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder,
    },
};

const PATIENCE: Duration = Duration::from_secs(20);

struct Candidates(mpsc::UnboundedSender<RTCIceCandidateInit>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Candidates {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.0.send(candidate);
        }
    }
}

fn field<'a>(signal: &'a Struct, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut at = signal;
    for name in parents {
        at = at.get(name)?.as_struct()?;
    }
    at.get(last)?.as_str()
}

fn description(kind: &str, sdp: &str) -> Struct {
    Struct::new().with("data", Struct::new().with("type", kind).with("sdp", sdp))
}

fn candidate(init: &RTCIceCandidateInit) -> Struct {
    let candidate = Struct::new()
        .with("candidate", init.candidate.as_str())
        .with("sdpMLineIndex", 0u16)
        .with("sdpMid", "0");
    Struct::new().with("data", Struct::new().with("type", "candidate").with("candidate", candidate))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossed_offers_end_in_one_connection_on_the_remotes_channel() {
    let (lower, higher) = common::ordered_keys();
    let topic = DiscoveryKey::from_party(&lower);
    let (sink, mut from_transport) = SignalSink::channel();
    let transport = WebRtcTransportFactory::loopback().create(TransportOptions {
        own: lower,
        remote: higher,
        topic,
        initiator: false,
        session: Keypair::generate().public(),
        signals: sink,
        link: None,
    });

    // The remote offers at once, on its own channel labelled with the topic.
    let (to_remote, mut remote_candidates) = mpsc::unbounded_channel();
    let remote: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_handler(Arc::new(Candidates(to_remote)))
            // No mDNS socket, so that this also runs on a host without a multicast route.
            .with_setting_engine(
                SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).build(),
            )
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .unwrap(),
    );
    let channel = remote.create_data_channel(&topic.to_hex(), None).await.unwrap();
    let offer = remote.create_offer(None).await.unwrap();
    remote.set_local_description(offer.clone()).await.unwrap();

    // This side, the offerer by DXOS's rule, offers too before it sees the remote's offer.
    transport.open().await.unwrap();
    let ours = tokio::time::timeout(PATIENCE, from_transport.recv()).await.unwrap().unwrap();
    assert_eq!(field(&ours, &["data", "type"]), Some("offer"), "the lower key offers");
    transport.signal(description("offer", &offer.sdp)).await.unwrap();

    // The remote ignores the offer it got, takes the answer, and trickles candidates both ways.
    let mut answered = false;
    let mut early = Vec::new();
    let opened = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                Some(signal) = from_transport.recv() => match field(&signal, &["data", "type"]) {
                    Some("answer") => {
                        let sdp = field(&signal, &["data", "sdp"]).unwrap().to_owned();
                        remote.set_remote_description(RTCSessionDescription::answer(sdp).unwrap()).await.unwrap();
                        answered = true;
                        for init in early.drain(..) {
                            remote.add_ice_candidate(init).await.unwrap();
                        }
                    }
                    Some("candidate") => {
                        let line = field(&signal, &["data", "candidate", "candidate"]).unwrap().to_owned();
                        let init = RTCIceCandidateInit { candidate: line, sdp_mid: Some("0".into()), sdp_mline_index: Some(0), ..Default::default() };
                        if answered { remote.add_ice_candidate(init).await.unwrap() } else { early.push(init) }
                    }
                    _ => {}
                },
                Some(init) = remote_candidates.recv() => transport.signal(candidate(&init)).await.unwrap(),
                event = channel.poll() => if let Some(DataChannelEvent::OnOpen) = event { return },
            }
        }
    })
    .await;
    assert!(opened.is_ok(), "the remote's channel opened");

    let mut stream = tokio::time::timeout(PATIENCE, transport.connected()).await.unwrap().unwrap();
    channel.send(BytesMut::from(&b"on the remote's channel"[..])).await.unwrap();
    let mut buf = [0u8; 23];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"on the remote's channel");
    transport.close().await;
    remote.close().await.unwrap();
}
