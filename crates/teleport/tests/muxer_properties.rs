//! Random byte streams into the sans-IO Teleport core (framer + balancer + muxer), in random
//! splits: nothing panics, the input ends either in data (the connection still open, or closed by
//! the remote's own `Close`) or in `CloseReason::Protocol` with a courtesy `Close` the remote can
//! read, and how the bytes were split never changes what comes out (up to the remote's `Close`:
//! what arrives behind it is read only if it came in the same read, as with DXOS's muxer).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mesh_proto::{
    Message,
    dxos::mesh::muxer::{Close, Command, Data, Destroy, OpenChannel, command},
};
use mesh_teleport::muxer::{ChannelId, CloseReason, Config, Event, Muxer};
use proptest::{collection::vec, prelude::*};

/// Tags this side opens before the input arrives, so `Data` for them is delivered.
const LOCAL_TAGS: [&str; 2] = ["x/one", "x/two"];

/// An event with its payload flattened, so events compare by content whatever the chunking.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Data(ChannelId, Bytes),
    Other(Event),
}

/// What a muxer did with one input.
struct Outcome {
    events: Vec<Seen>,
    transmitted: BytesMut,
    open: bool,
}

/// Feeds `input` cut at `cuts` (offsets, any order, out of range ones ignored) to a fresh muxer.
fn feed(input: &[u8], cuts: &[usize], config: &Config) -> Outcome {
    let mut muxer = Muxer::new(config.clone());
    let now = Instant::now();
    for tag in LOCAL_TAGS {
        muxer.open_channel(tag, None).expect("a fresh muxer opens channels");
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    cuts.extend([0, input.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut events = Vec::new();
    let mut transmitted = BytesMut::new();
    for piece in cuts.windows(2) {
        muxer.handle_input(now, &input[piece[0]..piece[1]]);
        muxer.poll_transmit(&mut transmitted, usize::MAX);
        while let Some(event) = muxer.poll_event() {
            events.push(match event {
                Event::Data { channel, data } => Seen::Data(channel, data.into_bytes()),
                other => Seen::Other(other),
            });
        }
    }
    Outcome { events, transmitted, open: muxer.is_open() }
}

/// The reason of the `Closed` event, if any; fails unless it is reported once, last.
fn closed_reason(events: &[Seen]) -> Result<Option<CloseReason>, TestCaseError> {
    let closed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| matches!(event, Seen::Other(Event::Closed { .. })))
        .map(|(index, _)| index)
        .collect();
    prop_assert!(closed.len() <= 1, "Closed reported {} times", closed.len());
    match (closed.first(), events.last()) {
        (Some(&index), Some(Seen::Other(Event::Closed { reason }))) => {
            prop_assert_eq!(index, events.len() - 1, "events after Closed");
            Ok(Some(reason.clone()))
        }
        _ => Ok(None),
    }
}

/// The events up to the remote's `Close` (the first `RemoteClosing`), inclusive.
fn until_remote_close(events: &[Seen]) -> &[Seen] {
    let closing = events.iter().position(|event| matches!(event, Seen::Other(Event::RemoteClosing { .. })));
    closing.map_or(events, |index| &events[..=index])
}

/// The error a remote reads from the courtesy `Close` in `transmitted`.
fn courtesy_close(transmitted: &[u8]) -> Option<String> {
    let mut remote = Muxer::new(Config::default());
    remote.handle_input(Instant::now(), transmitted);
    std::iter::from_fn(|| remote.poll_event()).find_map(|event| match event {
        Event::RemoteClosing { error } => error,
        _ => None,
    })
}

fn check(input: &[u8], cuts_a: &[usize], cuts_b: &[usize], config: &Config) -> Result<(), TestCaseError> {
    let a = feed(input, cuts_a, config);
    let b = feed(input, cuts_b, config);
    prop_assert_eq!(
        until_remote_close(&a.events),
        until_remote_close(&b.events),
        "the split changed the events"
    );
    match closed_reason(&a.events)? {
        None => {}
        Some(CloseReason::Protocol(err)) => {
            prop_assert!(!a.open);
            // Unless this side already answered the remote's `Close`, its `Close` says why.
            let answered = until_remote_close(&a.events).len() < a.events.len();
            if !answered {
                let error = courtesy_close(&a.transmitted).unwrap_or_default();
                prop_assert!(
                    error.contains(&err.to_string()),
                    "the courtesy Close says {error:?}, not {err}"
                );
            }
        }
        // A `Close` or `Destroy` command in the input: the remote closed it.
        Some(CloseReason::Remote(_)) => {}
        Some(other) => prop_assert!(false, "remote bytes ended the connection with {other:?}"),
    }
    for event in &a.events {
        if let Seen::Data(channel, _) = event {
            prop_assert!(channel.0 as usize <= LOCAL_TAGS.len(), "data for a channel never opened");
        }
    }
    Ok(())
}

/// A `Command` as the remote's muxer would write it, with ids and tags from small pools so that
/// they meet this side's channels.
fn command() -> impl Strategy<Value = Command> {
    let tag = prop_oneof![Just("x/one".to_owned()), Just("x/two".to_owned()), "[a-z/]{0,12}"];
    let payload = prop_oneof![
        3 => (-1..4i32, tag, proptest::option::of("[a-z/]{0,8}"))
            .prop_map(|(id, tag, content_type)| command::Payload::OpenChannel(OpenChannel { id, tag, content_type })),
        6 => (-1..5i32, vec(any::<u8>(), 0..300))
            .prop_map(|(channel_id, data)| command::Payload::Data(Data { channel_id, data })),
        1 => proptest::option::of("[a-z ]{0,12}").prop_map(|error| command::Payload::Close(Close { error })),
        1 => proptest::option::of("[a-z ]{0,12}").prop_map(|error| command::Payload::Destroy(Destroy { error })),
    ];
    proptest::option::weighted(0.95, payload).prop_map(|payload| Command { payload })
}

/// One message on the wire: balancer chunks of at most `chunk` bytes, each in a frame, with the
/// total length on the first chunk (and, sometimes, a lie about it).
fn framed(channel: u32, message: &[u8], chunk: usize, total_delta: i8) -> Vec<u8> {
    let total = (message.len() as i64 + i64::from(total_delta)).max(0) as u64;
    let mut wire = Vec::new();
    let pieces: Vec<&[u8]> =
        if message.is_empty() { vec![&[]] } else { message.chunks(chunk.max(1)).collect() };
    for (index, piece) in pieces.iter().enumerate() {
        let mut payload = Vec::new();
        mesh_proto::prost::encoding::encode_varint(u64::from(channel), &mut payload);
        if index == 0 {
            mesh_proto::prost::encoding::encode_varint(total, &mut payload);
        }
        payload.extend_from_slice(piece);
        wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        wire.extend_from_slice(&payload);
    }
    wire
}

/// A byte stream of mostly well-formed frames carrying commands, with occasional junk.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        12 => (0..3u32, command(), 1..200usize, prop_oneof![8 => Just(0i8), 1 => -3..3i8])
            .prop_map(|(channel, command, chunk, delta)| framed(channel, &command.encode_to_vec(), chunk, delta)),
        1 => vec(any::<u8>(), 0..12),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_end_in_data_or_a_protocol_error(
        input in vec(any::<u8>(), 0..2048),
        cuts_a in vec(any::<usize>(), 0..16),
        cuts_b in vec(any::<usize>(), 0..16),
    ) {
        check(&input, &cuts_a, &cuts_b, &Config::default())?;
    }

    #[test]
    fn framed_commands_end_in_data_or_a_protocol_error(
        input in stream(),
        cuts_a in vec(any::<usize>(), 0..16),
        cuts_b in vec(any::<usize>(), 0..16),
    ) {
        // Small limits, so that the stream reaches them.
        let config = Config::default().with_max_message_size(256).with_max_channels(4);
        check(&input, &cuts_a, &cuts_b, &config)?;
    }
}
