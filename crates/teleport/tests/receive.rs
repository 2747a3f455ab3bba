//! What a remote can make a connection hold: the receive budget (partial plus unread messages), the
//! reassembly timeout, pauses that are ours rather than the remote's, and read buffers that small
//! messages must not keep alive. The sans-IO core is driven with raw frames; the end-to-end tests
//! run a real `Teleport` against a hand-written hostile remote over an in-memory byte stream.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::wire::{chunk, data_chunks, data_message};
use mesh_keys::PublicKey;
use mesh_teleport::muxer::{ChannelId, CloseReason, Config, Event, Muxer};
use mesh_teleport::{Params, ProtocolError, Teleport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

fn events(muxer: &mut Muxer) -> Vec<Event> {
    std::iter::from_fn(|| muxer.poll_event()).collect()
}

fn closed_reason(events: &[Event]) -> Option<&CloseReason> {
    events.iter().find_map(|event| match event {
        Event::Closed { reason } => Some(reason),
        _ => None,
    })
}

/// The `Close` error text `muxer` sent, read back by a second muxer.
fn close_sent(muxer: &mut Muxer) -> Option<String> {
    let mut out = BytesMut::new();
    muxer.poll_transmit(&mut out, usize::MAX);
    let mut reader = Muxer::new(Config::default());
    reader.handle_input(Instant::now(), &out);
    events(&mut reader).into_iter().find_map(|event| match event {
        Event::RemoteClosing { error } => error,
        _ => None,
    })
}

#[test]
fn partial_messages_beyond_the_budget_close_the_connection_and_memory_stays_within_it() {
    let mut muxer = Muxer::new(Config::default());
    let budget = muxer.receive_budget();
    let now = Instant::now();
    let piece = vec![0xa5; 8000];
    // 200 messages that announce 4 MiB each and never complete, 64 chunks apiece.
    'attack: for channel in 1..=200 {
        for i in 0..64 {
            let total = (i == 0).then_some(4 * MIB);
            muxer.handle_input(now, &chunk(channel, total, &piece));
            assert!(muxer.received_bytes() <= budget, "{} bytes held", muxer.received_bytes());
            if muxer.is_closed() {
                break 'attack;
            }
        }
    }
    let events = events(&mut muxer);
    assert!(
        matches!(
            closed_reason(&events),
            Some(CloseReason::Protocol(ProtocolError::ReceiveBudgetExceeded { budget: b, .. })) if *b == budget
        ),
        "{events:?}"
    );
    let close = close_sent(&mut muxer).expect("a courtesy Close with the reason");
    assert!(close.contains("budget"), "{close}");
}

/// Sends `messages` complete `Data` messages of `size` bytes for our channel 1.
fn fill_inbox(muxer: &mut Muxer, now: Instant, messages: usize, size: usize) {
    let payload = vec![7u8; size];
    for _ in 0..messages {
        muxer.handle_input(now, &data_message(9, 1, &payload));
    }
}

fn consume_all(muxer: &mut Muxer, now: Instant, events: &[Event]) -> bool {
    let mut resumed = false;
    for event in events {
        if let Event::Data { channel, data } = event {
            resumed |= muxer.consumed(now, *channel, data.len());
        }
    }
    resumed
}

#[test]
fn a_partial_message_without_progress_ends_the_connection_after_the_timeout() {
    let config = Config::default();
    let timeout = config.reassembly_timeout;
    let mut muxer = Muxer::new(config);
    let t0 = Instant::now();
    muxer.handle_input(t0, &chunk(3, Some(100_000), &[1; 1000]));
    assert_eq!(muxer.poll_timeout(), Some(t0 + timeout));
    // A chunk just before the deadline is progress: the clock starts again.
    let t1 = t0 + timeout - Duration::from_millis(1);
    muxer.handle_timeout(t1);
    muxer.handle_input(t1, &chunk(3, None, &[1; 1000]));
    muxer.handle_timeout(t0 + timeout);
    assert!(muxer.is_open());
    assert_eq!(muxer.poll_timeout(), Some(t1 + timeout));
    muxer.handle_timeout(t1 + timeout);
    let events = events(&mut muxer);
    assert!(
        matches!(
            closed_reason(&events),
            Some(CloseReason::Protocol(ProtocolError::ReassemblyStalled { channel: 3, .. }))
        ),
        "{events:?}"
    );
    assert!(close_sent(&mut muxer).is_some_and(|close| close.contains("partial message")));
}

#[test]
fn a_pause_for_unread_data_is_not_the_remotes_lack_of_progress_and_cannot_deadlock() {
    let config = Config::default();
    let (timeout, limit) = (config.reassembly_timeout, config.channel_recv_buffer);
    let mut muxer = Muxer::new(config);
    let ours = muxer.open_channel("x/unread", None).unwrap();
    let large_channel = muxer.open_channel("x/large", None).unwrap();
    assert_eq!((ours, large_channel), (ChannelId(1), ChannelId(2)));
    let t0 = Instant::now();
    // A large message starts on the remote's channel 5 …
    let mut large = data_chunks(5, 2, &vec![2; 3 * MIB]).into_iter();
    muxer.handle_input(t0, &large.next().unwrap());
    // … then more unread data than channel 1 may hold: the input pauses.
    fill_inbox(&mut muxer, t0, limit / 8000 + 2, 8000);
    assert!(!muxer.wants_input());
    // Chunks that arrive meanwhile wait; no stall deadline runs while we are the ones not reading.
    for piece in large {
        muxer.handle_input(t0, &piece);
    }
    assert_eq!(muxer.poll_timeout(), None);
    let t1 = t0 + 10 * timeout;
    muxer.handle_timeout(t1);
    assert!(muxer.is_open());
    // The reader catches up: input resumes, the held chunks complete the large message, and the
    // partial-message clock restarted at the resume.
    let delivered = events(&mut muxer);
    assert!(consume_all(&mut muxer, t1, &delivered));
    assert!(muxer.has_held_input());
    muxer.handle_input(t1, &[]);
    assert!(muxer.is_open());
    let delivered = events(&mut muxer);
    let arrived = delivered.iter().find_map(|event| match event {
        Event::Data { channel, data } if *channel == large_channel => Some(data.len()),
        _ => None,
    });
    assert_eq!(arrived, Some(3 * MIB));
    consume_all(&mut muxer, t1, &delivered);
    assert!(muxer.wants_input());
    muxer.handle_input(t1, &chunk(5, Some(100), &[3; 10]));
    assert_eq!(muxer.poll_timeout(), Some(t1 + timeout));
}

#[test]
fn a_largest_message_interleaved_with_a_lagging_channel_arrives_at_the_smallest_budget() {
    // The smallest budget there is: the largest message plus as much unread data on a channel whose
    // reader only catches up when the input pauses.
    let config = Config::default()
        .with_max_message_size(256 << 10)
        .with_receive_budget(0)
        .with_channel_recv_buffer(usize::MAX);
    let mut muxer = Muxer::new(config);
    let lagging = muxer.open_channel("x/lagging", None).unwrap();
    let large = muxer.open_channel("x/large", None).unwrap();
    let now = Instant::now();
    let message = vec![4u8; 256 << 10];
    let (mut unread, mut arrived, mut pauses) = (Vec::new(), None, 0);
    for piece in data_chunks(5, large.0 as i32, &message) {
        // The transport is read only while the muxer wants input, as the driver does.
        while !muxer.wants_input() {
            pauses += 1;
            for (channel, len) in unread.drain(..) {
                muxer.consumed(now, channel, len);
            }
            muxer.handle_input(now, &[]);
        }
        muxer.handle_input(now, &piece);
        muxer.handle_input(now, &data_message(9, lagging.0 as i32, &[5; 8000]));
        muxer.handle_input(now, &data_message(9, lagging.0 as i32, &[5; 8000]));
        for event in events(&mut muxer) {
            match event {
                Event::Data { channel, data } if channel == large => arrived = Some(data.into_bytes()),
                Event::Data { channel, data } => unread.push((channel, data.len())),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(muxer.received_bytes() <= muxer.receive_budget());
    }
    assert!(pauses > 0, "the lagging channel never paused the input");
    assert_eq!(arrived, Some(Bytes::from(message)));
}

/// Hands `block` to the muxer and returns the memory the data it delivered holds: the block's
/// capacity if any piece is a slice of it, plus the bytes of pieces copied out. (Measured at once,
/// while the block is still allocated, so a copy cannot land in its place.)
fn deliver_block(muxer: &mut Muxer, block: BytesMut) -> (usize, usize) {
    let range = block.as_ptr() as usize..block.as_ptr() as usize + block.capacity();
    let capacity = block.capacity();
    muxer.handle_input_owned(Instant::now(), block);
    let pieces: Vec<Bytes> = events(muxer)
        .into_iter()
        .filter_map(|event| match event {
            Event::Data { data, .. } => Some(data.into_parts()),
            _ => None,
        })
        .flatten()
        .collect();
    let counted = pieces.iter().map(Bytes::len).sum();
    let (shared, copied): (Vec<_>, Vec<_>) =
        pieces.iter().partition(|piece| range.contains(&(piece.as_ptr() as usize)));
    let held = if shared.is_empty() { 0 } else { capacity } + copied.iter().map(|p| p.len()).sum::<usize>();
    (counted, held)
}

#[test]
fn small_unread_messages_do_not_keep_their_read_buffers_alive() {
    let mut muxer = Muxer::new(Config::default());
    muxer.open_channel("x/unread", None).unwrap();
    // A slow remote: each read brings one small message into a fresh 128 KiB buffer.
    let (mut counted, mut held) = (0, 0);
    for i in 0..100u8 {
        let mut block = BytesMut::with_capacity(128 << 10);
        block.extend_from_slice(&data_message(9, 1, &[i; 100]));
        let (c, h) = deliver_block(&mut muxer, block);
        counted += c;
        held += h;
    }
    assert_eq!(counted, 100 * 100);
    assert_eq!(muxer.received_bytes(), counted);
    assert!(held <= 2 * counted, "{held} bytes held for {counted} bytes of unread messages");
}

#[test]
fn a_large_message_read_in_large_buffers_is_not_copied() {
    let mut muxer = Muxer::new(Config::default());
    muxer.open_channel("x/bulk", None).unwrap();
    // A 64 KiB Data message in chunks, all in one 128 KiB read.
    let mut block = BytesMut::with_capacity(128 << 10);
    for piece in data_chunks(9, 1, &vec![6u8; 64 << 10]) {
        block.extend_from_slice(&piece);
    }
    let (counted, held) = deliver_block(&mut muxer, block);
    assert_eq!(counted, 64 << 10);
    assert_eq!(held, 128 << 10, "the pieces stay in the read buffer (no copy)");
}

/// A remote that sends `bytes` and reports what the victim's `Close` said.
async fn hostile_remote(io: tokio::io::DuplexStream, bytes: Vec<u8>) -> Option<String> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader = async move {
        let mut muxer = Muxer::new(Config::default());
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => muxer.handle_input(Instant::now(), &buf[..n]),
            }
            for event in events(&mut muxer) {
                if let Event::RemoteClosing { error } = event {
                    return error;
                }
            }
        }
    };
    let writer = async move {
        // The victim hangs up once it has had enough; stop writing then.
        let _ = wr.write_all(&bytes).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        close = reader => close,
        () = writer => None,
    }
}

#[tokio::test]
async fn a_remote_pinning_partial_messages_is_cut_off_at_the_budget() {
    let (io, remote) = tokio::io::duplex(64 << 10);
    let victim = Teleport::new(io, Params::new(false, PublicKey::random(), PublicKey::random()));
    let piece = vec![0x5a; 8000];
    let mut attack = Vec::new();
    for channel in 1..=200 {
        for i in 0..64 {
            attack.extend_from_slice(&chunk(channel, (i == 0).then_some(4 * MIB), &piece));
        }
    }
    let remote = tokio::spawn(hostile_remote(remote, attack));
    let reason = tokio::time::timeout(Duration::from_secs(120), victim.closed()).await.expect("cut off");
    assert!(
        matches!(reason, CloseReason::Protocol(ProtocolError::ReceiveBudgetExceeded { .. })),
        "{reason:?}"
    );
    let close = remote.await.unwrap().expect("the remote is told why");
    assert!(close.contains("budget"), "{close}");
}

#[tokio::test(start_paused = true)]
async fn a_partial_message_left_hanging_ends_the_connection_before_the_heartbeat_would() {
    let (io, remote) = tokio::io::duplex(64 << 10);
    let victim = Teleport::new(io, Params::new(false, PublicKey::random(), PublicKey::random()));
    let remote = tokio::spawn(hostile_remote(remote, chunk(7, Some(MIB), &[1; 8000])));
    let start = tokio::time::Instant::now();
    let reason = victim.closed().await;
    assert!(
        matches!(reason, CloseReason::Protocol(ProtocolError::ReassemblyStalled { channel: 7, .. })),
        "{reason:?}"
    );
    let waited = start.elapsed();
    let params = Params::new(false, PublicKey::random(), PublicKey::random());
    assert!(
        waited >= params.muxer.reassembly_timeout && waited < params.heartbeat_timeout,
        "closed after {waited:?}"
    );
    assert!(remote.await.unwrap().is_some_and(|close| close.contains("partial message")));
}
