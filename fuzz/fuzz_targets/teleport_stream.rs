//! The Teleport byte stream: framer, balancer and muxer in one sans-IO core
//! (`muxer::Muxer::handle_input`), fed bytes in arbitrary splits, with this side's own calls in
//! between and every output drained.
//!
//! Records (see `mesh_fuzz`): the tag's low 3 bits pick the action. 0–4 bytes from the remote (the
//! body, as one read); 5 a local call built from the body (open a channel, send, release, close,
//! destroy); 6 time passes (the body's number, in milliseconds); 7 write out at most the body's
//! number of bytes. At the end the remote's stream ends.
//!
//! Checked: nothing panics, `Closed` is reported once and last, remote bytes alone end the
//! connection only with `Protocol`, `Remote` or `Eof`, and data arrives only on channels this side
//! opened.

#![no_main]

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::records;
use mesh_teleport::muxer::{ChannelId, CloseReason, Config, Event, Muxer};

/// Tags from a small pool, so that both sides' channels meet.
const TAGS: [&str; 3] = ["x/one", "x/two", "dxos.mesh.teleport.control/rpc"];

#[derive(Arbitrary, Debug)]
enum Call {
    Open { tag: u8 },
    Send { channel: u8, length: u16 },
    Release { channel: u8 },
    Close,
    Destroy,
}

/// What this side did and saw.
#[derive(Default)]
struct Local {
    opened: HashSet<ChannelId>,
    closed: Option<CloseReason>,
    /// This side asked to close or destroy, so a local reason is expected.
    asked_to_close: bool,
}

impl Local {
    fn drain(&mut self, muxer: &mut Muxer, now: Instant, max: usize) {
        let mut out = BytesMut::new();
        muxer.poll_transmit(&mut out, max);
        while let Some(event) = muxer.poll_event() {
            assert!(self.closed.is_none(), "an event after Closed: {event:?}");
            match event {
                Event::Data { channel, data } => {
                    assert!(self.opened.contains(&channel), "data on {channel:?}");
                    // Read at once, as a port's reader would, so the input never pauses for good.
                    muxer.consumed(now, channel, data.len());
                }
                Event::Closed { reason } => {
                    let expected = match &reason {
                        CloseReason::Protocol(_) | CloseReason::Remote(_) | CloseReason::Eof => true,
                        CloseReason::Local | CloseReason::Destroyed(_) => self.asked_to_close,
                        CloseReason::Io(_) | CloseReason::HeartbeatTimeout => false,
                    };
                    assert!(expected, "closed with {reason:?}");
                    self.closed = Some(reason);
                }
                _ => {}
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let config = Config::default().with_max_message_size(64 << 10).with_max_channels(8);
    let mut muxer = Muxer::new(config);
    let mut local = Local::default();
    let mut now = Instant::now();
    for record in records(input) {
        match record.tag & 0x07 {
            0..=4 => muxer.handle_input(now, record.body),
            5 => match record.structured::<Call>() {
                Some(Call::Open { tag }) => {
                    if let Ok(channel) = muxer.open_channel(TAGS[usize::from(tag) % TAGS.len()], None) {
                        local.opened.insert(channel);
                    }
                }
                Some(Call::Send { channel, length }) => {
                    let _ = muxer.send(ChannelId(channel.into()), Bytes::from(vec![channel; length.into()]));
                }
                Some(Call::Release { channel }) => {
                    local.opened.remove(&ChannelId(channel.into()));
                    muxer.release_channel(now, ChannelId(channel.into()));
                }
                Some(Call::Close) => {
                    local.asked_to_close = true;
                    muxer.close(now);
                }
                Some(Call::Destroy) => {
                    local.asked_to_close = true;
                    muxer.destroy(None);
                }
                None => {}
            },
            6 => {
                now += Duration::from_millis(record.number().into());
                muxer.handle_timeout(now);
            }
            _ => {
                local.drain(&mut muxer, now, record.number().into());
                continue;
            }
        }
        local.drain(&mut muxer, now, usize::MAX);
    }
    muxer.handle_eof();
    local.drain(&mut muxer, now, usize::MAX);
    assert!(muxer.is_closed() && local.closed.is_some(), "the stream ended but the connection did not");
});
