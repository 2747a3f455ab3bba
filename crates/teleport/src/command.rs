//! `dxos.mesh.muxer.Command` on the wire, with a copy-free path for `Data`, the command that
//! carries every byte of every channel.
//!
//! A `Data` command is written as a short head (keys and lengths, then the channel id) followed by
//! the payload itself, so the payload is never copied into a protobuf buffer; reading one slices the
//! payload out of the received message. Anything else goes through prost.

use bytes::{Buf, Bytes, BytesMut};

use crate::payload::Payload;
use mesh_proto::Message;
use mesh_proto::dxos::mesh::muxer::{Command, command};
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

/// A received command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// `Data { channel_id, data }`: `channel_id` is the receiver's (our) channel id.
    Data { channel_id: i32, data: Payload },
    /// Any other command (or a command without payload).
    Other(Command),
}

/// The bytes of a `Command { data: Data { channel_id, data } }` that come before `data`'s bytes.
pub(crate) fn data_head(channel_id: i32, data_len: usize) -> Bytes {
    // int32 is written as a 64-bit varint (negative values sign-extend to 10 bytes).
    let id = i64::from(channel_id) as u64;
    let id_len = if channel_id == 0 { 0 } else { 1 + encoded_len_varint(id) };
    let inner = id_len + 1 + encoded_len_varint(data_len as u64) + data_len;
    let mut head = BytesMut::with_capacity(1 + 10 + id_len + 1 + 10);
    head.extend_from_slice(&[0x12]);
    encode_varint(inner as u64, &mut head);
    if channel_id != 0 {
        head.extend_from_slice(&[0x08]);
        encode_varint(id, &mut head);
    }
    head.extend_from_slice(&[0x12]);
    encode_varint(data_len as u64, &mut head);
    head.freeze()
}

/// Encodes any command with prost.
pub(crate) fn encode(cmd: &Command) -> Bytes {
    Bytes::from(cmd.encode_to_vec())
}

/// Decodes a reassembled message.
pub(crate) fn decode(msg: Payload) -> Result<Incoming, prost::DecodeError> {
    if let Some((channel_id, head_len)) =
        msg.parts().first().and_then(|first| data_head_len(first, msg.len()))
    {
        let mut parts = msg.into_parts();
        parts[0].advance(head_len);
        return Ok(Incoming::Data { channel_id, data: Payload::from_parts(parts) });
    }
    let cmd = Command::decode(msg.into_bytes())?;
    Ok(match cmd.payload {
        Some(command::Payload::Data(data)) => {
            Incoming::Data { channel_id: data.channel_id, data: Payload::from(Bytes::from(data.data)) }
        }
        _ => Incoming::Other(cmd),
    })
}

/// Reads the head of the common shape `12 len [08 id] 12 len data` from the message's first piece,
/// checking that `data` runs to the end of the message (`total` bytes); returns the channel id and
/// the head's length. `None` sends the message to prost (other shapes, unknown fields, anything
/// odd).
fn data_head_len(first: &Bytes, total: usize) -> Option<(i32, usize)> {
    let mut buf = &first[..];
    let start = buf.len();
    if decode_varint(&mut buf).ok()? != 0x12 {
        return None;
    }
    let inner_len = decode_varint(&mut buf).ok()?;
    if inner_len != (total - (start - buf.len())) as u64 {
        return None;
    }
    let mut channel_id = 0i32;
    let mut key = decode_varint(&mut buf).ok()?;
    if key == 0x08 {
        channel_id = decode_varint(&mut buf).ok()? as i32;
        key = decode_varint(&mut buf).ok()?;
    }
    if key != 0x12 {
        return None;
    }
    let data_len = decode_varint(&mut buf).ok()?;
    let head_len = start - buf.len();
    (data_len == (total - head_len) as u64).then_some((channel_id, head_len))
}

#[cfg(test)]
mod tests {
    use mesh_proto::dxos::mesh::muxer::{Close, Data};

    use super::*;

    #[test]
    fn data_head_matches_prost_encoding() {
        for (id, len) in [(1, 0), (5, 10), (300, 70_000), (0, 3), (-1, 2)] {
            let data = vec![0xab; len];
            let cmd = Command {
                payload: Some(command::Payload::Data(Data { channel_id: id, data: data.clone() })),
            };
            let mut ours = data_head(id, len).to_vec();
            ours.extend_from_slice(&data);
            if len == 0 {
                // prost leaves an empty `bytes` out; protobufjs (and we) write it. Both decode alike.
                assert_eq!(Command::decode(&ours[..]).unwrap(), cmd);
            } else {
                assert_eq!(ours, cmd.encode_to_vec(), "id {id} len {len}");
            }
            let expected = Incoming::Data { channel_id: id, data: Payload::from(Bytes::from(data.clone())) };
            assert_eq!(decode(Payload::from(Bytes::from(ours.clone()))).unwrap(), expected);
            // The same message in pieces, cut anywhere after the head.
            if ours.len() > 40 {
                let whole = Bytes::from(ours);
                let half = whole.len() / 2;
                let pieces =
                    Payload::from_parts([whole.slice(..30), whole.slice(30..half), whole.slice(half..)]);
                match decode(pieces).unwrap() {
                    Incoming::Data { channel_id, data: got } => {
                        assert_eq!(channel_id, id);
                        assert_eq!(got.into_bytes(), Bytes::from(data));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn other_commands_go_through_prost() {
        let cmd = Command { payload: Some(command::Payload::Close(Close { error: Some("bye".into()) })) };
        assert_eq!(decode(Payload::from(encode(&cmd))).unwrap(), Incoming::Other(cmd));
        assert!(decode(Payload::from(Bytes::from_static(&[0x12, 0x05, 0x08]))).is_err());
    }
}
