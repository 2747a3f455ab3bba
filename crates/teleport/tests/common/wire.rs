//! Raw Teleport bytes, written the way a hostile remote would: balancer chunks with any channel
//! id and announced length, and whole `Data` commands.

use mesh_proto::Message;
use mesh_proto::dxos::mesh::muxer::{Command, Data, command};

/// One framed balancer chunk: `[u16 length][varint channel][varint total, first chunk only][data]`.
pub fn chunk(channel: u32, total: Option<usize>, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    prost::encoding::encode_varint(u64::from(channel), &mut body);
    if let Some(total) = total {
        prost::encoding::encode_varint(total as u64, &mut body);
    }
    body.extend_from_slice(data);
    let mut frame = (body.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A `Data` command for the receiver's channel `to`, sent as one chunk on sender channel `from`.
pub fn data_message(from: u32, to: i32, payload: &[u8]) -> Vec<u8> {
    let cmd =
        Command { payload: Some(command::Payload::Data(Data { channel_id: to, data: payload.to_vec() })) };
    let message = cmd.encode_to_vec();
    chunk(from, Some(message.len()), &message)
}

/// A `Data` command for the receiver's channel `to`, cut into framed chunks of at most 8 KiB on
/// sender channel `from`, as the balancer sends it.
pub fn data_chunks(from: u32, to: i32, payload: &[u8]) -> Vec<Vec<u8>> {
    let cmd =
        Command { payload: Some(command::Payload::Data(Data { channel_id: to, data: payload.to_vec() })) };
    let message = cmd.encode_to_vec();
    message
        .chunks(8192)
        .enumerate()
        .map(|(i, piece)| chunk(from, (i == 0).then_some(message.len()), piece))
        .collect()
}
