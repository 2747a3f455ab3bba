//! TCP links between two mesh peers cannot be taken over, end to end: real signal server, real
//! swarms, real sockets. An intruder that connects to the initiator's port first is refused, and
//! a `{port}` signal forged through the signal server does not make the responder talk to the
//! forger; in both cases the real link still forms.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Hello, PATIENCE, topic, wait_hellos};
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_proto::{
    Struct, any,
    dxos::mesh::swarm::{MessageData, Signal, SignalBatch, SwarmMessage, message_data::Payload},
};
use mesh_signal::{Client, Messenger};
use mesh_signal_server::{Config, Server};
use mesh_swarm::{Event, NetworkManager, SwarmConfig, SwarmHandle, topology::FullyConnected};
use mesh_transport::{
    SignalSink, Transport, TransportFactory, TransportKind, TransportOptions, tcp::TcpTransportFactory,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

/// TCP with the peer's key pair, whose initiating transports report their `{port}` to the test
/// and hold their signals until the test opens the gate: the test decides what reaches the
/// responder first.
struct HeldSignals {
    tcp: TcpTransportFactory,
    ports: mpsc::UnboundedSender<u16>,
    gate: watch::Receiver<bool>,
}

impl TransportFactory for HeldSignals {
    fn create(&self, mut options: TransportOptions) -> Arc<dyn Transport> {
        if options.initiator {
            let (held, mut signals) = SignalSink::channel();
            let to_remote = std::mem::replace(&mut options.signals, held);
            let (ports, mut gate) = (self.ports.clone(), self.gate.clone());
            // Ends when the transport drops its sink.
            tokio::spawn(async move {
                while let Some(signal) = signals.recv().await {
                    if let Some(port) = signal.get("port").and_then(|port| port.as_f64()) {
                        let _ = ports.send(port as u16);
                    }
                    let _ = gate.wait_for(|open| *open).await;
                    if to_remote.send(signal).await.is_err() {
                        return;
                    }
                }
            });
        }
        self.tcp.create(options)
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn authenticates_links(&self) -> bool {
        self.tcp.authenticates_links()
    }
}

/// Two mesh peers in one topic: the initiator (the lower key, which offers) with its signals held,
/// and the responder.
struct Pair {
    server: Server,
    topic: DiscoveryKey,
    initiator: PublicKey,
    responder: PublicKey,
    /// The responder's swarm events, from before the initiator joined.
    responder_events: tokio::sync::broadcast::Receiver<Event>,
    ports: mpsc::UnboundedReceiver<u16>,
    gate: watch::Sender<bool>,
    hellos: mpsc::UnboundedReceiver<(PublicKey, PublicKey)>,
    _swarms: Vec<SwarmHandle>,
}

impl Pair {
    async fn join() -> Self {
        let server = Server::start(Config::default()).await.unwrap();
        let mut pairs = [Keypair::generate(), Keypair::generate()];
        pairs.sort_by_key(Keypair::public);
        let [initiator, responder] = pairs;
        let (ports_tx, ports) = mpsc::unbounded_channel();
        let (gate, gate_rx) = watch::channel(false);
        let (hello_tx, hellos) = mpsc::unbounded_channel();
        let protocol = Arc::new(Hello(hello_tx));
        let topic = topic();
        let manager = |pair: &Keypair, transports: Arc<dyn TransportFactory>| {
            let client = Client::connect(server.url()).unwrap();
            NetworkManager::new(pair.public(), Arc::new(client), transports, SwarmConfig::default())
        };

        let responder_tcp = TcpTransportFactory::default().with_identity(responder.clone());
        let responder_swarm = manager(&responder, Arc::new(responder_tcp)).await.unwrap();
        let responder_swarm =
            responder_swarm.join(topic, Box::new(FullyConnected), protocol.clone()).await.unwrap();
        let responder_events = responder_swarm.events();
        let tcp = TcpTransportFactory::default().with_identity(initiator.clone());
        let held = HeldSignals { tcp, ports: ports_tx, gate: gate_rx };
        let initiator_swarm = manager(&initiator, Arc::new(held)).await.unwrap();
        let initiator_swarm = initiator_swarm.join(topic, Box::new(FullyConnected), protocol).await.unwrap();
        Self {
            server,
            topic,
            initiator: initiator.public(),
            responder: responder.public(),
            responder_events,
            ports,
            gate,
            hellos,
            _swarms: vec![responder_swarm, initiator_swarm],
        }
    }

    /// The port the initiator listens on (its signal is held).
    async fn port(&mut self) -> u16 {
        tokio::time::timeout(PATIENCE, self.ports.recv()).await.unwrap().expect("the initiator listens")
    }

    /// The responder's connection attempt from the initiator.
    async fn session(&mut self) -> PublicKey {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Event::State { peer, session, .. } = self.responder_events.recv().await.unwrap()
                    && peer == self.initiator
                {
                    return session;
                }
            }
        })
        .await
        .expect("the responder takes the initiator's offer")
    }

    /// Lets the initiator's `{port}` through and waits until both said hello to each other.
    async fn release_and_link(&mut self) {
        self.gate.send_replace(true);
        wait_hellos(&mut self.hellos, &[self.initiator, self.responder]).await;
    }
}

/// What `socket` receives until it is closed (or reset).
async fn rest_of(socket: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut bytes)).await;
    // Closed or reset alike: the other end let go.
    let _ = read.expect("the socket was closed");
    bytes
}

#[tokio::test]
async fn a_socket_that_connects_to_the_initiator_first_is_refused_and_the_real_peer_connects() {
    let mut pair = Pair::join().await;
    let port = pair.port().await;
    let mut intruder = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The intruder says what the protocol expects from the responder.
    intruder.write_all(pair.responder.as_bytes()).await.unwrap();
    assert_eq!(rest_of(&mut intruder).await, Vec::<u8>::new(), "the intruder gets nothing");
    pair.release_and_link().await;
}

#[tokio::test]
async fn a_forged_port_signal_does_not_make_the_responder_talk_to_the_forger() {
    let mut pair = Pair::join().await;
    let session = pair.session().await;

    // A third signaling client, posing as the initiator, sends the responder its own port.
    let forger = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = forger.local_addr().unwrap().port();
    let signal = Signal { payload: Some(Struct::new().with("port", port)) };
    let forged = SwarmMessage {
        topic: Some(PublicKey::from_bytes(pair.topic.to_bytes()).into()),
        session_id: Some(session.into()),
        data: Some(MessageData {
            payload: Some(Payload::SignalBatch(SignalBatch { signals: vec![signal] })),
        }),
        message_id: Some(PublicKey::random().into()),
    };
    let messenger = Messenger::new(Arc::new(Client::connect(pair.server.url()).unwrap()));
    let (initiator, responder) = (pair.initiator, pair.responder);
    // The acknowledgement goes to the real initiator, so this send never completes; it is dropped
    // with the test.
    let _forging =
        tokio::spawn(async move { messenger.send(initiator, responder, any::pack(&forged)).await });

    let (mut hijacked, _) = tokio::time::timeout(PATIENCE, forger.accept()).await.unwrap().unwrap();
    let mut first = [0u8; 7];
    tokio::time::timeout(PATIENCE, hijacked.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(&first, b"MESHLNK", "the responder proves itself before anything else");
    let mut proof = [0u8; 65];
    hijacked.read_exact(&mut proof).await.unwrap();
    // The forger says what the protocol expects from the initiator.
    hijacked.write_all(initiator.as_bytes()).await.unwrap();
    assert_eq!(rest_of(&mut hijacked).await, Vec::<u8>::new(), "no protocol bytes reach the forger");

    pair.release_and_link().await;
}
