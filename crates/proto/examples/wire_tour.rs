//! A tour of the wire: a new peer key, the topic of a party, and the bytes of the Join request a
//! peer sends to a signal server, exactly as a DXOS 0.8.3 client would write them.

use mesh_keys::{DiscoveryKey, Keypair};
use mesh_proto::{
    Message, any,
    dxos::{
        mesh::signal::JoinRequest,
        rpc::{Request, RpcMessage, rpc_message},
    },
};

fn main() {
    let peer = Keypair::generate();
    let party = Keypair::generate();
    let topic = DiscoveryKey::from_party(&party.public());
    println!("peer key      {}", peer.public());
    println!("party key     {}", party.public());
    println!("discovery key {topic}");

    let join = RpcMessage {
        content: Some(rpc_message::Content::Request(Request {
            id: Some(0),
            method: "dxos.mesh.signal.Signal.Join".into(),
            payload: Some(any::pack_request(&JoinRequest {
                swarm: topic.as_bytes().to_vec(),
                peer: peer.public().as_bytes().to_vec(),
                metadata: None,
            })),
            stream: Some(true),
        })),
    };
    let bytes = join.encode_to_vec();
    println!("Join request  {} bytes, one WebSocket message:", bytes.len());
    for line in bytes.chunks(32) {
        println!("  {}", hex::encode(line));
    }

    let signature = peer.sign(topic.as_bytes());
    let verified = peer.public().verify(topic.as_bytes(), &signature).is_ok();
    println!("peer signs the topic: signature verifies = {verified}");
}
