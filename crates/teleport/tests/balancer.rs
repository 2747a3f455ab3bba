//! The balancer and framer layers under random splits and interleavings.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mesh_teleport::balancer::{Balancer, MAX_CHUNK};
use mesh_teleport::framer::FrameDecoder;
use proptest::prelude::*;

fn run(messages: &[(u32, Vec<u8>)], cuts: &[usize]) -> Vec<(u32, Bytes)> {
    let mut tx = Balancer::new(1 << 20, 64);
    for (ch, data) in messages {
        // Split each message at a random-ish point between head and body.
        let at = data.len() / 3;
        tx.push(*ch, Bytes::copy_from_slice(&data[..at]), Bytes::copy_from_slice(&data[at..]));
    }
    let mut wire = BytesMut::new();
    let mut sizes = Vec::new();
    while let Some(chunk) = tx.poll_chunk(&mut wire) {
        assert!(chunk.len <= MAX_CHUNK);
        sizes.push(chunk.len);
    }
    let mut rx = Balancer::new(1 << 20, 64);
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    let mut rest = &wire[..];
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cut.next().unwrap_or(&1)).min(rest.len());
        decoder.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = decoder.next_frame() {
            assert!(frame.data.len() <= MAX_CHUNK + 20);
            if let Some(message) = rx.receive(Instant::now(), frame).expect("well-formed frame") {
                got.push((message.0, message.1.into_bytes()));
            }
        }
    }
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(rx.reassembling_bytes(), 0);
    got
}

#[test]
fn chunk_boundaries_reassemble_exactly() {
    for len in [1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, 2 * MAX_CHUNK, 2 * MAX_CHUNK + 1, 100_000] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let got = run(&[(1, data.clone())], &[7, 8192, 3]);
        assert_eq!(got, vec![(1, Bytes::from(data))], "length {len}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn per_channel_order_survives_any_split(
        messages in proptest::collection::vec((0u32..5, proptest::collection::vec(any::<u8>(), 1..25_000)), 1..16),
        cuts in proptest::collection::vec(1usize..10_000, 1..30),
    ) {
        let got = run(&messages, &cuts);
        prop_assert_eq!(got.len(), messages.len());
        for ch in 0..5 {
            let sent: Vec<Bytes> = messages.iter().filter(|(c, _)| *c == ch).map(|(_, d)| Bytes::from(d.clone())).collect();
            let received: Vec<Bytes> = got.iter().filter(|(c, _)| *c == ch).map(|(_, d)| d.clone()).collect();
            prop_assert_eq!(received, sent);
        }
    }

    #[test]
    fn random_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..50)) {
        let mut rx = Balancer::new(1000, 4);
        for frame in frames {
            let _ = rx.receive(Instant::now(), Bytes::from(frame));
        }
    }
}
