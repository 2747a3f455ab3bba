//! A raw WebSocket client speaking `dxos.rpc` frame by frame, to poke the server with exactly the
//! bytes a test wants.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mesh_keys::{Keypair, PublicKey};
use mesh_proto::{
    Any, Message, Name, any,
    dxos::{
        error::Error as ErrorMessage,
        mesh::signal::{self, JoinRequest, ReceptionRequest, SwarmEvent, swarm_event},
        rpc::{Request, Response, RpcMessage, StreamClose, response, rpc_message},
    },
};
use mesh_signal_server::{Config, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message as WsMessage};

pub const PATIENCE: Duration = Duration::from_secs(10);

pub const JOIN: &str = "dxos.mesh.signal.Signal.Join";
pub const RECEIVE: &str = "dxos.mesh.signal.Signal.ReceiveMessages";
pub const SEND: &str = "dxos.mesh.signal.Signal.SendMessage";

pub async fn server_with(config: Config) -> Server {
    Server::start(config).await.expect("server starts")
}

pub fn key() -> PublicKey {
    Keypair::generate().public()
}

pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent: a response, an `open_ack`, or the end of the connection.
#[derive(Debug)]
pub enum Received {
    Response(Response),
    OpenAck,
    Closed(Option<u16>),
}

impl RawClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Self { ws }
    }

    /// Connects sending `host` in the `Host` header instead of the URL's authority.
    pub async fn connect_with_host(url: &str, host: &str) -> Self {
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::header::HOST};
        let mut request = url.into_client_request().expect("a valid URL");
        request.headers_mut().insert(HOST, host.parse().expect("a valid header value"));
        let (ws, _) = connect_async(request).await.expect("websocket connects");
        Self { ws }
    }

    /// Connects with a 4 KiB socket receive buffer, so that once this client stops reading, the
    /// server's writes to it stall after a few megabytes instead of tens.
    pub async fn connect_with_small_window(url: &str) -> Self {
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse::<std::net::SocketAddr>().ok())
            .expect("a ws:// URL with an IP address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer size");
        let stream = socket.connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket connects");
        Self { ws }
    }

    /// Sends the `dxos.rpc` handshake's `open`.
    pub async fn open(&mut self) {
        let message = RpcMessage { content: Some(rpc_message::Content::Open(true)) };
        self.send_bytes(message.encode_to_vec()).await;
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(WsMessage::Text(text.into())).await.expect("send");
    }

    pub async fn request<M: Message + Name>(&mut self, id: i32, method: &str, payload: &M, stream: bool) {
        self.request_any(id, method, any::pack_request(payload), stream).await;
    }

    pub async fn request_any(&mut self, id: i32, method: &str, payload: Any, stream: bool) {
        let request =
            Request { id: Some(id), method: method.into(), payload: Some(payload), stream: Some(stream) };
        let message = RpcMessage { content: Some(rpc_message::Content::Request(request)) };
        self.send_bytes(message.encode_to_vec()).await;
    }

    pub async fn close_stream(&mut self, id: i32) {
        let message =
            RpcMessage { content: Some(rpc_message::Content::StreamClose(StreamClose { id: Some(id) })) };
        self.send_bytes(message.encode_to_vec()).await;
    }

    pub async fn join(&mut self, id: i32, topic: PublicKey, peer: PublicKey) {
        let join =
            JoinRequest { swarm: topic.as_bytes().to_vec(), peer: peer.as_bytes().to_vec(), metadata: None };
        self.request(id, JOIN, &join, true).await;
    }

    pub async fn receive(&mut self, id: i32, peer: PublicKey) {
        self.request(id, RECEIVE, &ReceptionRequest { peer: peer.as_bytes().to_vec() }, true).await;
    }

    pub async fn send_message(&mut self, id: i32, author: PublicKey, recipient: PublicKey, body: &[u8]) {
        let message = signal::Message {
            author: author.as_bytes().to_vec(),
            recipient: recipient.as_bytes().to_vec(),
            payload: Some(Any { type_url: "test.Body".into(), value: body.to_vec() }),
            metadata: None,
        };
        self.request(id, SEND, &message, false).await;
    }

    /// The next thing the server sends: a response, or the connection's end.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE, self.recv()).await.expect("the server answered in time")
    }

    /// The next thing the server sends, however long it takes.
    pub async fn recv(&mut self) -> Received {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    let message = RpcMessage::decode(bytes.as_ref()).expect("server sends RpcMessages");
                    match message.content {
                        Some(rpc_message::Content::Response(response)) => {
                            return Received::Response(response);
                        }
                        Some(rpc_message::Content::OpenAck(_)) => return Received::OpenAck,
                        other => panic!("unexpected frame from the server: {other:?}"),
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    pub async fn response(&mut self) -> Response {
        match self.next().await {
            Received::Response(response) => response,
            Received::Closed(code) => panic!("connection closed ({code:?}) while a response was expected"),
            Received::OpenAck => panic!("an open_ack while a response was expected"),
        }
    }

    /// The next response, which must be `stream_ready` for `id`.
    pub async fn expect_ready(&mut self, id: i32) {
        let response = self.response().await;
        assert_eq!(response.id, Some(id));
        assert_eq!(response.content, Some(response::Content::StreamReady(true)), "{response:?}");
    }

    /// The next response, which must be an error named `name` for `id`.
    pub async fn expect_error(&mut self, id: i32, name: &str) -> ErrorMessage {
        let response = self.response().await;
        assert_eq!(response.id, Some(id), "{response:?}");
        match response.content {
            Some(response::Content::Error(error)) => {
                assert_eq!(error.name.as_deref(), Some(name), "{error:?}");
                error
            }
            other => panic!("expected error {name}, got {other:?}"),
        }
    }

    /// The next response, which must be a unary reply with a payload for `id`.
    pub async fn expect_reply(&mut self, id: i32) -> Any {
        let response = self.response().await;
        assert_eq!(response.id, Some(id), "{response:?}");
        match response.content {
            Some(response::Content::Payload(payload)) => payload,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The next response, which must be a swarm event on stream `id`.
    pub async fn expect_event(&mut self, id: i32) -> swarm_event::Event {
        let payload = self.expect_reply(id).await;
        any::decode_value::<SwarmEvent>(&payload).expect("swarm event").event.expect("event set")
    }

    /// The next response, which must be a relayed message on stream `id`.
    pub async fn expect_message(&mut self, id: i32) -> signal::Message {
        let payload = self.expect_reply(id).await;
        any::decode_value::<signal::Message>(&payload).expect("message")
    }

    pub async fn expect_closed(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// Drops the TCP connection without a WebSocket close.
    pub fn abort(self) {
        drop(self.ws.into_inner());
    }
}

pub fn available_peer(event: &swarm_event::Event) -> Option<Vec<u8>> {
    match event {
        swarm_event::Event::PeerAvailable(available) => Some(available.peer.clone()),
        swarm_event::Event::PeerLeft(_) => None,
    }
}

pub fn left_peer(event: &swarm_event::Event) -> Option<Vec<u8>> {
    match event {
        swarm_event::Event::PeerLeft(left) => Some(left.peer.clone()),
        swarm_event::Event::PeerAvailable(_) => None,
    }
}

/// A plain HTTP GET; returns the status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("write");
    let mut text = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text)).await.expect("in time").expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

pub const CHALLENGE: &str = "mesh.v1.SignalAuth.Challenge";
pub const AUTHENTICATE: &str = "mesh.v1.SignalAuth.Authenticate";

impl RawClient {
    /// Proves `identity` to the server, signing for `host`; returns the server's answer to the
    /// Authenticate request (a payload, or an error).
    pub async fn authenticate(&mut self, id: i32, identity: &Keypair, host: &str) -> Response {
        let peer = identity.public().as_bytes().to_vec();
        self.request(id, CHALLENGE, &mesh_proto::mesh::v1::ChallengeRequest { peer: peer.clone() }, false)
            .await;
        let challenge: mesh_proto::mesh::v1::ChallengeResponse =
            any::decode_value(&self.expect_reply(id).await).expect("challenge");
        let signature = identity.sign(&mesh_proto::auth::signal_challenge(host, &challenge.nonce));
        let request =
            mesh_proto::mesh::v1::AuthenticateRequest { peer, signature: signature.as_bytes().to_vec() };
        self.request(id + 1, AUTHENTICATE, &request, false).await;
        self.response().await
    }
}

/// The `Host` header a client sends for `server`: the authority of its URL.
pub fn host_of(server: &Server) -> String {
    server.local_addr().to_string()
}

pub fn is_error(response: &Response, name: &str) -> bool {
    matches!(&response.content, Some(response::Content::Error(error)) if error.name.as_deref() == Some(name))
}

/// The swarm event a response carries, if it is one: its stream and the event.
pub fn swarm_event_of(response: &Response) -> Option<(i32, swarm_event::Event)> {
    let Some(response::Content::Payload(payload)) = &response.content else { return None };
    let event = any::decode_value::<SwarmEvent>(payload).ok()?.event?;
    Some((response.id?, event))
}
