//! The task that drives one peer connection: offer/answer, trickle ICE, the data channel.
//!
//! One task per transport owns the peer connection. It waits on three inputs — the remote's
//! signals, the peer connection's events, and the transport's stop token — and acts on one at a
//! time, so the negotiation is a plain sequence: no locks around the peer connection, and
//! candidates that arrive before the remote description wait in a bounded list.

use std::sync::{Arc, Mutex, OnceLock};

use mesh_keys::PublicKey;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::debug;
use webrtc::{
    data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit},
    peer_connection::{PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription},
};

use super::{
    WebRtcTransportFactory,
    events::{Forwarder, PeerEvent},
    peer::build_peer,
    runtime::BufferedRuntime,
    signals::{Signal, same_sdp},
    stream::DataChannelStream,
};
use crate::{
    ByteStream, ChannelBinding, Metered, TransportError, TransportOptions, api::channel_binding,
    handover::Handover, metered::Counters,
};

/// Remote candidates kept while the remote description is still missing; a peer has a handful.
const EARLY_CANDIDATES: usize = 64;

/// Remote signals queued for the session task (the swarm delivers them one by one).
pub(super) const SIGNAL_QUEUE: usize = 64;

/// What the transport handle and its tasks share.
pub(super) struct Shared {
    pub(super) options: TransportOptions,
    pub(super) config: WebRtcTransportFactory,
    /// Checked remote signals, for the session task.
    pub(super) remote_signals: mpsc::Sender<Signal>,
    /// The receiving end, until `open` starts the session task with it.
    pub(super) unopened: Mutex<Option<mpsc::Receiver<Signal>>>,
    /// The outcome, and the connected stream until `connected` takes it.
    pub(super) handover: Handover,
    pub(super) counters: Arc<Counters>,
    /// The channel binding, once both descriptions are set.
    pub(super) binding: OnceLock<ChannelBinding>,
    /// Stops every task of the transport, and closes the peer connection.
    pub(super) stop: CancellationToken,
    pub(super) tasks: TaskTracker,
}

impl Shared {
    pub(super) fn new(options: TransportOptions, config: WebRtcTransportFactory) -> Self {
        let (remote_signals, unopened) = mpsc::channel(SIGNAL_QUEUE);
        Self {
            options,
            config,
            remote_signals,
            unopened: Mutex::new(Some(unopened)),
            handover: Handover::new(),
            counters: Arc::default(),
            binding: OnceLock::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

pub(super) fn failed(context: &str, err: impl std::fmt::Display) -> TransportError {
    TransportError::Failed(format!("{context}: {err}"))
}

/// Whether `own` makes the WebRTC offer to `remote`.
///
/// DXOS 0.8.3 (`chooseInitiatorPeer`) makes the peer whose key sorts first in hex the offerer,
/// whichever side dialled the swarm connection, so that two peers agree however their swarms
/// met. Lower-case hex of equal-length keys sorts as the bytes do.
pub(crate) fn offers(own: &PublicKey, remote: &PublicKey) -> bool {
    own.to_hex() < remote.to_hex()
}

/// Creates the peer connection, sends the offer if this side offers, and leaves the rest
/// to a task on `shared.tasks`.
pub(super) async fn start(
    shared: &Arc<Shared>,
    remote: mpsc::Receiver<Signal>,
) -> Result<(), TransportError> {
    let (handler, events) = Forwarder::new();
    let runtime = Arc::new(BufferedRuntime::default());
    let peer = build_peer(&shared.config, handler, runtime.clone()).await?;
    let mut session = Session {
        shared: shared.clone(),
        peer,
        runtime,
        events,
        remote,
        offerer: offers(&shared.options.own, &shared.options.remote),
        channel: None,
        remote_sdp: None,
        negotiated: false,
        early_candidates: Vec::new(),
    };
    if let Err(err) = session.offer().await {
        session.teardown().await;
        return Err(err);
    }
    shared.tasks.spawn(session.run());
    Ok(())
}

struct Session {
    shared: Arc<Shared>,
    peer: Arc<dyn PeerConnection>,
    /// The peer connection's runtime, to wake its driver after adding a candidate.
    runtime: Arc<BufferedRuntime>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    remote: mpsc::Receiver<Signal>,
    /// Whether this side offers: DXOS's rule ([`offers`]) until crossed offers make it yield.
    offerer: bool,
    /// The offerer's channel from the start; the answerer's once the remote opened it.
    channel: Option<Arc<dyn DataChannel>>,
    /// The remote description in place, to recognise it when it comes again.
    remote_sdp: Option<String>,
    /// Both descriptions are in place: remote candidates can be added from now on.
    negotiated: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
}

impl Session {
    /// The offerer creates the channel and the offer; the answerer waits for the offer.
    async fn offer(&mut self) -> Result<(), TransportError> {
        if !self.offerer {
            return Ok(());
        }
        // DXOS labels a swarm's channel with its topic in hex; reliable and ordered is the default.
        let label = self.shared.options.topic.to_hex();
        let channel = self
            .peer
            .create_data_channel(&label, Some(RTCDataChannelInit { ordered: true, ..Default::default() }))
            .await
            .map_err(|err| failed("creating the data channel", err))?;
        self.channel = Some(channel);
        let offer = self.peer.create_offer(None).await.map_err(|err| failed("creating the offer", err))?;
        self.peer
            .set_local_description(offer.clone())
            .await
            .map_err(|err| failed("applying the offer", err))?;
        self.shared.options.signals.send(Signal::Offer(offer).to_struct()).await
    }

    async fn run(mut self) {
        match self.connect().await {
            Ok(channel) => {
                let stream = DataChannelStream::new(channel, &self.shared.tasks, self.shared.stop.clone());
                let stream: ByteStream = Box::new(Metered::new(stream, self.shared.counters.clone()));
                self.shared.handover.connected(stream);
                self.serve().await;
            }
            Err(err) => {
                debug!(%err, "WebRTC transport failed");
                self.shared.handover.fail(err);
            }
        }
        self.teardown().await;
    }

    /// Negotiates until the data channel is open.
    async fn connect(&mut self) -> Result<Arc<dyn DataChannel>, TransportError> {
        let stop = self.shared.stop.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Err(TransportError::Closed),
                opened = wait_open(self.channel.clone()) => return opened,
                Some(signal) = self.remote.recv() => self.apply(signal).await?,
                event = self.events.recv() => match event {
                    Some(PeerEvent::Candidate(candidate)) => {
                        self.shared.options.signals.send(Signal::Candidate(candidate).to_struct()).await?;
                    }
                    Some(PeerEvent::State(state)) => check_state(state)?,
                    Some(PeerEvent::Channel(channel)) if !self.offerer => {
                        // webrtc announces a remote channel once it is open. DXOS opens one
                        // channel per swarm, labelled with the topic; take that one.
                        let label = channel.label().await.unwrap_or_default();
                        if label == self.shared.options.topic.to_hex() {
                            self.channel = Some(channel.clone());
                            return Ok(channel);
                        }
                        debug!(%label, "ignoring a data channel not labelled with the topic");
                    }
                    Some(PeerEvent::Channel(_)) => debug!("ignoring a data channel the answerer opened"),
                    None => return Err(TransportError::Closed),
                },
            }
        }
    }

    /// Keeps the connection up once the stream is handed over: late candidates go both ways,
    /// and a failed connection stops the stream's tasks, so its reads end.
    async fn serve(&mut self) {
        let stop = self.shared.stop.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(signal) = self.remote.recv() => {
                    if let Err(err) = self.apply(signal).await {
                        debug!(%err, "WebRTC connection ended by a signal");
                        stop.cancel();
                        return;
                    }
                }
                event = self.events.recv() => match event {
                    Some(PeerEvent::Candidate(candidate)) => {
                        let _ = self.shared.options.signals.send(Signal::Candidate(candidate).to_struct()).await;
                    }
                    Some(PeerEvent::State(state)) => {
                        if let Err(err) = check_state(state) {
                            debug!(%err, "WebRTC connection ended");
                            stop.cancel();
                            return;
                        }
                    }
                    Some(PeerEvent::Channel(_)) => debug!("ignoring a second data channel"),
                    None => return,
                },
            }
        }
    }

    /// Acts on one remote signal, as DXOS's `RtcPeerConnection.onSignal` does: a description
    /// that repeats the one in place is ignored, and candidates wait until both descriptions
    /// are set.
    async fn apply(&mut self, signal: Signal) -> Result<(), TransportError> {
        match signal {
            Signal::Offer(offer) | Signal::Answer(offer) if self.repeats_remote(&offer.sdp) => {
                debug!("ignoring a repeated session description");
            }
            Signal::Offer(offer) => self.answer(offer).await?,
            Signal::Answer(answer) if self.offerer && self.remote_sdp.is_none() => {
                self.describe_remote(answer).await?;
                self.negotiated().await;
            }
            Signal::Answer(_) => debug!("ignoring an answer to no offer of ours"),
            Signal::Candidate(candidate) if self.negotiated => self.add_candidate(candidate).await,
            Signal::Candidate(candidate) => {
                if self.early_candidates.len() < EARLY_CANDIDATES {
                    self.early_candidates.push(candidate);
                } else {
                    debug!("too many ICE candidates before negotiation ended; dropping one");
                }
            }
        }
        Ok(())
    }

    /// Takes the remote's offer and answers it.
    ///
    /// Crossed offers (the remote offered although this side does, as a peer that makes the
    /// swarm initiator the offerer would) are resolved as a polite browser peer resolves them:
    /// this side rolls its own offer back, answers, and uses the channel the remote opens. Only
    /// the offerer by DXOS's rule ever yields, so two peers never both roll back.
    async fn answer(&mut self, offer: RTCSessionDescription) -> Result<(), TransportError> {
        if self.remote_sdp.is_some() {
            // DXOS aborts on an offer after negotiation too; renegotiation is not part of it.
            return Err(TransportError::BadSignal("a second offer after negotiation".into()));
        }
        if self.offerer {
            debug!("crossed offers: rolling ours back to answer the remote's");
            let rollback = RTCSessionDescription::rollback(None).map_err(|err| failed("rollback", err))?;
            self.peer
                .set_local_description(rollback)
                .await
                .map_err(|err| failed("rolling back the offer", err))?;
            if let Some(channel) = self.channel.take() {
                let _ = channel.close().await;
            }
            self.offerer = false;
        }
        self.describe_remote(offer).await?;
        let answer = self.peer.create_answer(None).await.map_err(|err| failed("creating the answer", err))?;
        self.peer
            .set_local_description(answer.clone())
            .await
            .map_err(|err| failed("applying the answer", err))?;
        self.shared.options.signals.send(Signal::Answer(answer).to_struct()).await?;
        self.negotiated().await;
        Ok(())
    }

    fn repeats_remote(&self, sdp: &str) -> bool {
        self.remote_sdp.as_deref().is_some_and(|applied| same_sdp(applied, sdp))
    }

    async fn describe_remote(&mut self, description: RTCSessionDescription) -> Result<(), TransportError> {
        let sdp = description.sdp.clone();
        self.peer
            .set_remote_description(description)
            .await
            .map_err(|err| TransportError::BadSignal(format!("remote description refused: {err}")))?;
        self.remote_sdp = Some(sdp);
        Ok(())
    }

    /// Both descriptions are set: the candidates that came early can be added now, and the
    /// channel binding is known.
    async fn negotiated(&mut self) {
        self.negotiated = true;
        let local =
            self.peer.local_description().await.map(|description| description.sdp).unwrap_or_default();
        let remote = self.remote_sdp.clone().unwrap_or_default();
        let (offer, answer) = if self.offerer { (&local, &remote) } else { (&remote, &local) };
        let _ = self.shared.binding.set(dtls_binding(offer, answer));
        for candidate in std::mem::take(&mut self.early_candidates) {
            self.add_candidate(candidate).await;
        }
    }

    async fn add_candidate(&self, candidate: RTCIceCandidateInit) {
        // One bad candidate must not end the attempt: the others may still connect.
        if let Err(err) = self.peer.add_ice_candidate(candidate).await {
            debug!(%err, "remote ICE candidate refused");
        }
        // webrtc does not wake its driver for a new remote candidate; without this, the first
        // check to it waits for the next ICE tick.
        self.runtime.kick();
    }

    /// Closes the channel first, so the remote sees the channel close (and its reads end) at
    /// once rather than when its ICE times out, then the peer connection.
    async fn teardown(&self) {
        if let Some(channel) = &self.channel {
            let _ = channel.close().await;
        }
        if let Err(err) = self.peer.close().await {
            debug!(%err, "closing the peer connection");
        }
    }
}

/// The binding of a WebRTC connection: the DTLS certificate fingerprints of the offer and the
/// answer. DTLS checks each side's certificate against them, so someone relaying between two
/// peers, who must end DTLS with certificates of its own, leaves the two sides with different
/// bindings.
fn dtls_binding(offer: &str, answer: &str) -> ChannelBinding {
    let fingerprints = |sdp: &str| -> String {
        sdp.lines()
            .filter_map(|line| line.trim().strip_prefix("a=fingerprint:"))
            .map(|fingerprint| fingerprint.trim().to_ascii_lowercase() + "\n")
            .collect()
    };
    channel_binding(
        "mesh webrtc dtls binding v1",
        &[fingerprints(offer).as_bytes(), fingerprints(answer).as_bytes()],
    )
}

/// Waits for the offerer's channel to open; never resolves for the answerer.
async fn wait_open(channel: Option<Arc<dyn DataChannel>>) -> Result<Arc<dyn DataChannel>, TransportError> {
    let Some(channel) = channel else { return std::future::pending().await };
    loop {
        match channel.poll().await {
            Some(DataChannelEvent::OnOpen) => return Ok(channel),
            Some(DataChannelEvent::OnClose) | None => {
                return Err(TransportError::Failed("data channel closed before it opened".into()));
            }
            Some(_) => {}
        }
    }
}

fn check_state(state: RTCPeerConnectionState) -> Result<(), TransportError> {
    match state {
        RTCPeerConnectionState::Failed => {
            Err(TransportError::Failed("WebRTC connection failed (ICE or DTLS)".into()))
        }
        RTCPeerConnectionState::Closed => Err(TransportError::Closed),
        _ => Ok(()),
    }
}
