//! RPC messages: `dxos.rpc` decoding and the `RpcPeer`/`Router` path, on a real `Teleport`.
//!
//! The remote is a bare muxer on the other end of an in-memory pipe. It opens the control
//! extension's RPC channel (served by Teleport's own `Router`: RegisterExtension, Heartbeat) and the
//! channel of a `fuzz` extension whose `RpcPeer` serves a `Router` and also calls the remote, then
//! sends what the input says. Everything runs on a current-thread runtime with paused time, so
//! timeouts fire as soon as nothing else can run.
//!
//! Records (see `mesh_fuzz`): the tag's low 2 bits pick the action and bit 2 the channel (control
//! or `fuzz`). Actions: 0 a raw `RpcMessage` (the body); 1 an `RpcMessage` built from the body; 2–3
//! time passes (the body's number, in milliseconds, times ten).
//!
//! Checked: nothing panics or hangs.

#![no_main]

use std::{sync::Mutex, time::Duration};

use arbitrary::Arbitrary;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::records;
use mesh_keys::PublicKey;
use mesh_proto::{
    Any, Message, Timestamp, any,
    dxos::{
        error::Error as ErrorMessage,
        mesh::teleport::control::{
            ControlHeartbeatRequest, ControlHeartbeatResponse, RegisterExtensionRequest,
        },
        rpc::{Bye, Request, Response, RpcMessage, StreamClose, response, rpc_message},
    },
};
use mesh_teleport::{
    ChannelId, Extension, ExtensionContext, ExtensionError, Params, Teleport, control,
    muxer::{self, Muxer, RPC_CONTENT_TYPE},
    rpc::{RpcConfig, RpcPeer},
    service::Router,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    time::timeout,
};

const EXTENSION: &str = "fuzz";
const ECHO: &str = "mesh.fuzz.Service.Echo";
const NOTHING: &str = "mesh.fuzz.Service.Nothing";

/// Serves a router on its RPC port and calls the remote a few times.
#[derive(Default)]
struct Served {
    peers: Mutex<Vec<RpcPeer>>,
}

#[async_trait]
impl Extension for Served {
    async fn on_open(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let port = ctx.create_port("rpc", Some(RPC_CONTENT_TYPE))?;
        let router = Router::new()
            .route(ECHO, |request: ControlHeartbeatRequest| async move {
                Ok(ControlHeartbeatResponse { request_timestamp: request.request_timestamp })
            })
            .route(NOTHING, |_: RegisterExtensionRequest| async { Ok(()) });
        let rpc = RpcPeer::new(port, router, RpcConfig::default());
        let caller = rpc.clone();
        tokio::spawn(async move {
            if caller.open().await.is_ok() {
                let request = ControlHeartbeatRequest { request_timestamp: Some(Timestamp::default()) };
                for _ in 0..3 {
                    let _ = caller.call_typed::<_, ControlHeartbeatResponse>(ECHO, &request).await;
                }
            }
        });
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(rpc);
        Ok(())
    }
}

#[derive(Arbitrary, Debug)]
enum Method {
    RegisterExtension,
    Heartbeat,
    Echo,
    Nothing,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Name(String),
    Timestamp(i64, i32),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Reply {
    Payload(Vec<u8>),
    Error(Option<String>, Option<String>),
    Close,
    StreamReady,
}

#[derive(Arbitrary, Debug)]
enum Rpc {
    Request { id: Option<i32>, method: Method, payload: Option<Payload>, stream: Option<bool> },
    Response { id: Option<i32>, reply: Option<Reply> },
    Open,
    OpenAck,
    StreamClose { id: Option<i32> },
    Bye,
}

impl Rpc {
    fn encode(self) -> Vec<u8> {
        let content = match self {
            Self::Request { id, method, payload, stream } => {
                let method = match method {
                    Method::RegisterExtension => control::REGISTER_EXTENSION.to_owned(),
                    Method::Heartbeat => control::HEARTBEAT.to_owned(),
                    Method::Echo => ECHO.to_owned(),
                    Method::Nothing => NOTHING.to_owned(),
                    Method::Other(name) => name,
                };
                let payload = payload.map(|payload| match payload {
                    Payload::Name(name) => any::pack_request(&RegisterExtensionRequest { name }),
                    Payload::Timestamp(seconds, nanos) => any::pack_request(&ControlHeartbeatRequest {
                        request_timestamp: Some(Timestamp { seconds, nanos }),
                    }),
                    Payload::Bytes(value) => Any { type_url: String::new(), value },
                });
                rpc_message::Content::Request(Request { id, method, payload, stream })
            }
            Self::Response { id, reply } => {
                let content = reply.map(|reply| match reply {
                    Reply::Payload(value) => {
                        response::Content::Payload(Any { type_url: String::new(), value })
                    }
                    Reply::Error(name, message) => {
                        response::Content::Error(ErrorMessage { name, message, stack: None, context: None })
                    }
                    Reply::Close => response::Content::Close(true),
                    Reply::StreamReady => response::Content::StreamReady(true),
                });
                rpc_message::Content::Response(Response { id, content })
            }
            Self::Open => rpc_message::Content::Open(true),
            Self::OpenAck => rpc_message::Content::OpenAck(true),
            Self::StreamClose { id } => rpc_message::Content::StreamClose(StreamClose { id }),
            Self::Bye => rpc_message::Content::Bye(Bye {}),
        };
        RpcMessage { content: Some(content) }.encode_to_vec()
    }
}

/// The remote: a bare muxer writing to and reading from the pipe.
struct Remote {
    muxer: Muxer,
    wire: DuplexStream,
    closed: bool,
}

impl Remote {
    fn now() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn send(&mut self, channel: ChannelId, message: Vec<u8>) {
        let _ = self.muxer.send(channel, Bytes::from(message));
    }

    /// Moves bytes both ways until Teleport has nothing more to say for now.
    async fn pump(&mut self) {
        let mut buffer = vec![0; 16 << 10];
        while !self.closed {
            let mut out = BytesMut::new();
            self.muxer.poll_transmit(&mut out, usize::MAX);
            while self.muxer.poll_event().is_some() {}
            if !out.is_empty()
                && !matches!(timeout(Duration::from_secs(1), self.wire.write_all(&out)).await, Ok(Ok(())))
            {
                self.closed = true;
                return;
            }
            // On paused time the timeout fires once every task is idle.
            match timeout(Duration::from_millis(1), self.wire.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => self.closed = true,
                Ok(Ok(read)) => self.muxer.handle_input(Self::now(), &buffer[..read]),
                Err(_) => return,
            }
        }
    }
}

async fn run(input: &[u8]) {
    let (local_io, wire) = tokio::io::duplex(64 << 10);
    let (local_key, remote_key) = (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
    let teleport = Teleport::new(local_io, Params::new(false, local_key, remote_key));
    let _ = teleport.add_extension(EXTENSION, Served::default());

    let mut remote = Remote { muxer: Muxer::new(muxer::Config::default()), wire, closed: false };
    let open = |muxer: &mut Muxer, tag: &str| muxer.open_channel(tag, Some(RPC_CONTENT_TYPE)).ok();
    let (Some(control), Some(served)) =
        (open(&mut remote.muxer, control::TAG), open(&mut remote.muxer, &format!("{EXTENSION}/rpc")))
    else {
        return;
    };
    // Open the control RPC and register the extension, so the `fuzz` extension opens.
    remote.send(control, Rpc::Open.encode());
    remote.send(control, Rpc::OpenAck.encode());
    let register = Rpc::Request {
        id: Some(0),
        method: Method::RegisterExtension,
        payload: Some(Payload::Name(EXTENSION.to_owned())),
        stream: Some(false),
    };
    remote.send(control, register.encode());
    remote.pump().await;

    for record in records(input) {
        let channel = if record.tag & 0x04 == 0 { served } else { control };
        match record.tag & 0x03 {
            0 => remote.send(channel, record.body.to_vec()),
            1 => {
                if let Some(rpc) = record.structured::<Rpc>() {
                    remote.send(channel, rpc.encode());
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(u64::from(record.number()) * 10)).await,
        }
        remote.pump().await;
    }
    // Let every call and handshake time out, then end the connection.
    tokio::time::sleep(Duration::from_secs(5)).await;
    remote.pump().await;
    teleport.destroy();
    remote.pump().await;
}

fuzz_target!(|input: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build();
    if let Ok(runtime) = runtime {
        runtime.block_on(run(input));
    }
});
