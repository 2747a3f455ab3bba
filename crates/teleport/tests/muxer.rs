//! The sans-IO core on its own: two `Muxer`s wired back to back on a virtual clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mesh_proto::Message;
use mesh_proto::dxos::mesh::muxer::{Command, Data, command};
use mesh_teleport::muxer::{ChannelId, CloseReason, Config, Event, Muxer, RPC_CONTENT_TYPE, SendError};
use mesh_teleport::payload::Segments;
use mesh_teleport::{ChannelError, ProtocolError};

/// Two muxers and the bytes in flight between them.
struct Pair {
    a: Muxer,
    b: Muxer,
    now: Instant,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
}

impl Pair {
    fn new(config: Config) -> Self {
        Self {
            a: Muxer::new(config.clone()),
            b: Muxer::new(config),
            now: Instant::now(),
            a_events: vec![],
            b_events: vec![],
        }
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            let mut out = BytesMut::new();
            if self.a.poll_transmit(&mut out, usize::MAX) {
                self.b.handle_input(self.now, &out);
                moved = true;
            }
            let mut out = BytesMut::new();
            if self.b.poll_transmit(&mut out, usize::MAX) {
                self.a.handle_input(self.now, &out);
                moved = true;
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }
}

fn data_events(events: &[Event], channel: ChannelId) -> Vec<Bytes> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { channel: c, data } if *c == channel => Some(data.clone().into_bytes()),
            _ => None,
        })
        .collect()
}

#[test]
fn first_frame_matches_the_dxos_golden_vector() {
    let golden = include_str!("../../../tests/golden/vectors/teleport-first-frame.hex");
    let hex_line = golden.lines().find(|l| !l.starts_with('#')).unwrap().trim();
    let mut muxer = Muxer::new(Config::default());
    muxer.open_channel("dxos.mesh.teleport.control/rpc", Some(RPC_CONTENT_TYPE)).unwrap();
    let mut out = BytesMut::new();
    assert!(muxer.poll_transmit(&mut out, usize::MAX));
    assert_eq!(hex::encode(&out), hex_line);
}

#[test]
fn writes_wait_until_the_remote_opens_the_tag() {
    let mut pair = Pair::new(Config::default());
    let a_ch = pair.a.open_channel("ext/data", None).unwrap();
    pair.a.send(a_ch, Bytes::from_static(b"early")).unwrap();
    pair.drive();
    assert!(!pair.a.is_remote_open(a_ch));
    assert!(pair.b_events.iter().all(|e| !matches!(e, Event::Data { .. })));
    let b_ch = pair.b.open_channel("ext/data", None).unwrap();
    pair.drive();
    assert!(pair.a.is_remote_open(a_ch));
    assert_eq!(data_events(&pair.b_events, b_ch), vec![Bytes::from_static(b"early")]);
}

#[test]
fn ids_are_local_and_data_carries_the_remotes_id() {
    let mut pair = Pair::new(Config::default());
    // a opens two tags, b opens them in the other order: ids differ per side.
    let a1 = pair.a.open_channel("x/one", None).unwrap();
    let a2 = pair.a.open_channel("x/two", None).unwrap();
    let b2 = pair.b.open_channel("x/two", None).unwrap();
    let b1 = pair.b.open_channel("x/one", None).unwrap();
    pair.drive();
    assert_eq!((a1, a2, b2, b1), (ChannelId(1), ChannelId(2), ChannelId(1), ChannelId(2)));
    pair.a.send(a1, Bytes::from_static(b"to one")).unwrap();
    pair.a.send(a2, Bytes::from_static(b"to two")).unwrap();
    pair.drive();
    assert_eq!(data_events(&pair.b_events, b1), vec![Bytes::from_static(b"to one")]);
    assert_eq!(data_events(&pair.b_events, b2), vec![Bytes::from_static(b"to two")]);
}

#[test]
fn data_for_an_unknown_channel_is_dropped() {
    let mut muxer = Muxer::new(Config::default());
    let cmd = Command { payload: Some(command::Payload::Data(Data { channel_id: 42, data: vec![1, 2, 3] })) };
    let message = cmd.encode_to_vec();
    let mut frame = BytesMut::new();
    let mut chunk = vec![0, message.len() as u8];
    chunk.extend_from_slice(&message);
    mesh_teleport::framer::encode_frame(&chunk, &mut frame).unwrap();
    muxer.handle_input(Instant::now(), &frame);
    assert_eq!(muxer.poll_event(), None);
    assert!(muxer.is_open());
}

#[test]
fn a_full_send_buffer_refuses_then_reports_writable() {
    let config = Config::default().with_channel_send_buffer(64 << 10);
    let mut pair = Pair::new(config);
    let a = pair.a.open_channel("x/bulk", None).unwrap();
    pair.b.open_channel("x/bulk", None).unwrap();
    pair.drive();
    let piece = Bytes::from(vec![7u8; 16 << 10]);
    let mut accepted = 0;
    while pair.a.send(a, piece.clone()).is_ok() {
        accepted += 1;
        assert!(accepted < 100, "the send buffer never filled");
    }
    assert_eq!(pair.a.send(a, piece.clone()), Err(SendError::Full));
    assert!(pair.a.queued_bytes(a) <= 64 << 10);
    pair.drive();
    assert!(pair.a_events.contains(&Event::Writable { channel: a }));
    assert_eq!(pair.a.queued_bytes(a), 0);
    pair.a.send(a, piece).unwrap();
}

#[test]
fn one_busy_channel_does_not_starve_another() {
    let config = Config::default().with_channel_send_buffer(1 << 20);
    let mut pair = Pair::new(config);
    let busy = pair.a.open_channel("x/busy", None).unwrap();
    let quiet = pair.a.open_channel("x/quiet", None).unwrap();
    pair.b.open_channel("x/busy", None).unwrap();
    let b_quiet = pair.b.open_channel("x/quiet", None).unwrap();
    pair.drive();
    pair.a.send(busy, Bytes::from(vec![1u8; 1 << 20])).unwrap();
    pair.a.send(quiet, Bytes::from_static(b"hello")).unwrap();
    // Only three chunks' worth of bytes go out: the quiet message must be among them.
    let mut out = BytesMut::new();
    pair.a.poll_transmit(&mut out, 3 * 8200);
    pair.b.handle_input(pair.now, &out);
    let mut got = vec![];
    while let Some(e) = pair.b.poll_event() {
        got.push(e);
    }
    assert_eq!(data_events(&got, b_quiet), vec![Bytes::from_static(b"hello")]);
}

#[test]
fn oversized_send_is_refused() {
    let mut muxer = Muxer::new(Config::default().with_max_message_size(1000));
    let ch = muxer.open_channel("x/y", None).unwrap();
    assert_eq!(
        muxer.send(ch, Bytes::from(vec![0; 1001])),
        Err(SendError::Channel(ChannelError::TooLarge { len: 1001, limit: 1000 }))
    );
}

#[test]
fn opening_a_tag_twice_is_refused() {
    let mut muxer = Muxer::new(Config::default());
    muxer.open_channel("x/y", None).unwrap();
    assert_eq!(muxer.open_channel("x/y", None), Err(ChannelError::AlreadyOpen("x/y".into())));
}

#[test]
fn graceful_close_delivers_queued_data_then_both_sides_close() {
    let mut pair = Pair::new(Config::default());
    let a = pair.a.open_channel("x/y", None).unwrap();
    let b = pair.b.open_channel("x/y", None).unwrap();
    pair.drive();
    pair.a.send(a, Bytes::from(vec![5u8; 100_000])).unwrap();
    pair.a.close(pair.now);
    assert_eq!(pair.a.send(a, Bytes::from_static(b"late")), Err(SendError::Channel(ChannelError::Closed)));
    pair.drive();
    assert_eq!(data_events(&pair.b_events, b), vec![Bytes::from(vec![5u8; 100_000])]);
    assert!(pair.a_events.contains(&Event::Closed { reason: CloseReason::Local }));
    assert!(pair.b_events.contains(&Event::RemoteClosing { error: None }));
    assert!(pair.b_events.contains(&Event::Closed { reason: CloseReason::Remote(None) }));
}

#[test]
fn close_gives_up_waiting_after_three_seconds() {
    let mut muxer = Muxer::new(Config::default());
    let now = Instant::now();
    muxer.close(now);
    let mut out = BytesMut::new();
    assert!(muxer.poll_transmit(&mut out, usize::MAX));
    assert_eq!(muxer.poll_timeout(), Some(now + Duration::from_secs(3)));
    muxer.handle_timeout(now + Duration::from_millis(2999));
    assert!(!muxer.is_closed());
    muxer.handle_timeout(now + Duration::from_secs(3));
    assert!(muxer.is_closed());
    assert_eq!(muxer.poll_event(), Some(Event::Closed { reason: CloseReason::Local }));
}

#[test]
fn destroy_is_idempotent_and_reports_closed_once() {
    let mut muxer = Muxer::new(Config::default());
    muxer.destroy(Some("bye".into()));
    muxer.destroy(None);
    muxer.close(Instant::now());
    let events: Vec<_> = std::iter::from_fn(|| muxer.poll_event()).collect();
    assert_eq!(events, vec![Event::Closed { reason: CloseReason::Destroyed(Some("bye".into())) }]);
    // The courtesy Close still goes out.
    let mut out = BytesMut::new();
    assert!(muxer.poll_transmit(&mut out, usize::MAX));
}

#[test]
fn malformed_command_closes_with_a_reason() {
    let mut muxer = Muxer::new(Config::default());
    // frame: channel 0, length 2, bytes that are not a Command (field 1 of wire type 7)
    muxer.handle_input(Instant::now(), &[0, 4, 0, 2, 0x0f, 0x01]);
    match muxer.poll_event() {
        Some(Event::Closed { reason: CloseReason::Protocol(ProtocolError::MalformedCommand(_)) }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(muxer.is_closed());
}

#[test]
fn an_overlong_tag_closes_with_a_reason() {
    let mut muxer = Muxer::new(Config::default());
    let cmd = Command {
        payload: Some(command::Payload::OpenChannel(mesh_proto::dxos::mesh::muxer::OpenChannel {
            id: 1,
            tag: "x".repeat(2000),
            content_type: None,
        })),
    };
    let message = cmd.encode_to_vec();
    let mut chunk = vec![0];
    prost::encoding::encode_varint(message.len() as u64, &mut chunk);
    chunk.extend_from_slice(&message);
    let mut frame = BytesMut::new();
    mesh_teleport::framer::encode_frame(&chunk, &mut frame).unwrap();
    muxer.handle_input(Instant::now(), &frame);
    assert!(matches!(
        muxer.poll_event(),
        Some(Event::Closed { reason: CloseReason::Protocol(ProtocolError::InvalidOpenChannel(_)) })
    ));
}

#[test]
fn remote_eof_closes() {
    let mut muxer = Muxer::new(Config::default());
    muxer.handle_eof();
    assert_eq!(muxer.poll_event(), Some(Event::Closed { reason: CloseReason::Eof }));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random bytes never panic the core; anything it reports is a typed close.
        #[test]
        fn random_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut muxer = Muxer::new(Config::default().with_max_message_size(10_000));
            muxer.open_channel("x/y", None).unwrap();
            for chunk in chunks {
                muxer.handle_input(Instant::now(), &chunk);
            }
            while let Some(event) = muxer.poll_event() {
                if let Event::Closed { reason } = event {
                    prop_assert!(matches!(reason, CloseReason::Protocol(_)));
                }
            }
        }

        /// Frames written as pieces for vectored writes are the same bytes as frames copied into
        /// one buffer.
        #[test]
        fn vectored_and_flat_transmit_agree(
            messages in proptest::collection::vec((0usize..3, proptest::collection::vec(any::<u8>(), 0..20_000)), 1..10),
            batch in 1usize..100_000,
        ) {
            let config = Config::default().with_channel_send_buffer(1 << 30);
            let (mut flat, mut vectored) = (Muxer::new(config.clone()), Muxer::new(config));
            let mut remote = Muxer::new(Config::default());
            let tags = ["v/0", "v/1", "v/2"];
            for tag in tags {
                flat.open_channel(tag, None).unwrap();
                vectored.open_channel(tag, None).unwrap();
                remote.open_channel(tag, None).unwrap();
            }
            let mut opens = BytesMut::new();
            remote.poll_transmit(&mut opens, usize::MAX);
            flat.handle_input(Instant::now(), &opens);
            vectored.handle_input(Instant::now(), &opens);
            for (ch, data) in &messages {
                let id = ChannelId(*ch as u32 + 1);
                flat.send(id, Bytes::from(data.clone())).unwrap();
                vectored.send(id, Bytes::from(data.clone())).unwrap();
            }
            let mut expected = Vec::new();
            let mut out = BytesMut::new();
            while flat.poll_transmit(&mut out, batch) {
                expected.extend_from_slice(&out.split());
            }
            let mut segments = Segments::new();
            let mut got = Vec::new();
            while vectored.poll_transmit(&mut segments, batch) {
                while !segments.is_empty() {
                    let mut slices = [std::io::IoSlice::new(&[]); 4];
                    let n = segments.io_slices(&mut slices);
                    let written: usize = slices[..n].iter().map(|s| s.len()).sum();
                    let written = written.min(7_777);
                    let mut left = written;
                    for slice in &slices[..n] {
                        let take = slice.len().min(left);
                        got.extend_from_slice(&slice[..take]);
                        left -= take;
                    }
                    segments.advance(written);
                }
            }
            prop_assert_eq!(got, expected);
        }

        /// Messages on several channels, cut into random pieces on the wire, arrive whole and in
        /// order per channel.
        #[test]
        fn messages_survive_random_splits_and_interleavings(
            messages in proptest::collection::vec((0usize..4, proptest::collection::vec(any::<u8>(), 0..30_000)), 1..12),
            cuts in proptest::collection::vec(1usize..20_000, 1..40),
        ) {
            let mut a = Muxer::new(Config::default().with_channel_send_buffer(1 << 30));
            let mut b = Muxer::new(Config::default());
            let now = Instant::now();
            let tags = ["p/0", "p/1", "p/2", "p/3"];
            let a_ids: Vec<_> = tags.iter().map(|t| a.open_channel(t, None).unwrap()).collect();
            let b_ids: Vec<_> = tags.iter().map(|t| b.open_channel(t, None).unwrap()).collect();
            let mut out = BytesMut::new();
            b.poll_transmit(&mut out, usize::MAX);
            a.handle_input(now, &out);
            for (ch, data) in &messages {
                a.send(a_ids[*ch], Bytes::from(data.clone())).unwrap();
            }
            let mut wire = BytesMut::new();
            a.poll_transmit(&mut wire, usize::MAX);
            let mut rest = &wire[..];
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap()).min(rest.len());
                b.handle_input(now, &rest[..n]);
                rest = &rest[n..];
            }
            let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
            for (i, id) in b_ids.iter().enumerate() {
                let expected: Vec<Bytes> = messages.iter().filter(|(c, _)| *c == i).map(|(_, d)| Bytes::from(d.clone())).collect();
                prop_assert_eq!(data_events(&events, *id), expected);
            }
        }
    }
}

#[test]
fn an_abort_tells_the_remote_its_reason_in_plain_words() {
    for (reason, text) in [
        (CloseReason::HeartbeatTimeout, "heartbeat timed out"),
        (
            CloseReason::Protocol(ProtocolError::TooManyChannels(5)),
            "protocol violation: the remote opened more than 5 channels",
        ),
        (CloseReason::Destroyed(Some("shutting down".into())), "shutting down"),
    ] {
        let mut pair = Pair::new(Config::default());
        pair.drive();
        pair.a.abort(reason.clone());
        pair.drive();
        assert!(
            pair.b_events.contains(&Event::RemoteClosing { error: Some(text.into()) }),
            "{reason:?}: {:?}",
            pair.b_events
        );
    }
}
