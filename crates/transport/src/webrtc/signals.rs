//! DXOS WebRTC signals: the Structs simple-peer puts in `dxos.mesh.swarm.Signal.payload`.
//!
//! - `{data: {type: "offer" | "answer", sdp}}`
//! - `{data: {type: "candidate", candidate: {candidate, sdpMLineIndex, sdpMid}}}`
//!
//! Numbers are Struct number values (doubles), as protobufjs writes JSON numbers.

use mesh_proto::Struct;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCSessionDescription};

use crate::TransportError;

/// The `sdpMid` of the one media section a data-only session has.
const DATA_MID: &str = "0";

/// One WebRTC signal, checked and converted.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    /// The offerer's session description.
    Offer(RTCSessionDescription),
    /// The answerer's session description.
    Answer(RTCSessionDescription),
    /// A trickled ICE candidate; an empty `candidate` string marks the end of candidates.
    Candidate(RTCIceCandidateInit),
}

fn bad(message: impl Into<String>) -> TransportError {
    TransportError::BadSignal(message.into())
}

impl Signal {
    /// Reads a signal Struct.
    pub(crate) fn parse(payload: &Struct) -> Result<Self, TransportError> {
        let data = payload
            .get("data")
            .and_then(|value| value.as_struct())
            .ok_or_else(|| bad("expected a WebRTC signal {data: {type, ...}}"))?;
        let kind =
            data.get("type").and_then(|value| value.as_str()).ok_or_else(|| bad("data.type missing"))?;
        match kind {
            "offer" | "answer" => {
                let sdp = data
                    .get("sdp")
                    .and_then(|value| value.as_str())
                    .ok_or_else(|| bad(format!("{kind} without an sdp string")))?
                    .to_owned();
                if kind == "offer" {
                    RTCSessionDescription::offer(sdp)
                        .map(Signal::Offer)
                        .map_err(|err| bad(format!("offer SDP does not parse: {err}")))
                } else {
                    RTCSessionDescription::answer(sdp)
                        .map(Signal::Answer)
                        .map_err(|err| bad(format!("answer SDP does not parse: {err}")))
                }
            }
            "candidate" => parse_candidate(data).map(Signal::Candidate),
            other => Err(bad(format!("unknown WebRTC signal type {other:?}"))),
        }
    }

    /// Writes the signal as DXOS does.
    pub(crate) fn to_struct(&self) -> Struct {
        let data = match self {
            Signal::Offer(description) => {
                Struct::new().with("type", "offer").with("sdp", description.sdp.as_str())
            }
            Signal::Answer(description) => {
                Struct::new().with("type", "answer").with("sdp", description.sdp.as_str())
            }
            Signal::Candidate(candidate) => {
                // Always `sdpMLineIndex: 0, sdpMid: "0"`: a data-only session has one media
                // section, and webrtc's own `to_json` leaves `sdpMid` empty, which browsers
                // refuse.
                let mid = candidate.sdp_mid.as_deref().filter(|mid| !mid.is_empty()).unwrap_or(DATA_MID);
                let init = Struct::new()
                    .with("candidate", candidate.candidate.as_str())
                    .with("sdpMLineIndex", candidate.sdp_mline_index.unwrap_or(0))
                    .with("sdpMid", mid);
                Struct::new().with("type", "candidate").with("candidate", init)
            }
        };
        Struct::new().with("data", data)
    }
}

/// Whether two SDPs say the same, as DXOS's `areSdpEqual` judges it: line by line, ignoring a
/// line repeated within one section (some engines repeat attributes once a description is set).
pub(crate) fn same_sdp(a: &str, b: &str) -> bool {
    deduplicated_lines(a).eq(deduplicated_lines(b))
}

fn deduplicated_lines(sdp: &str) -> impl Iterator<Item = &str> {
    let mut seen: Vec<&str> = Vec::new();
    sdp.split("\r\n").filter(move |line| {
        if line.starts_with('m') {
            seen.clear();
        }
        if seen.contains(line) {
            return false;
        }
        seen.push(line);
        true
    })
}

fn parse_candidate(data: &Struct) -> Result<RTCIceCandidateInit, TransportError> {
    let init = data
        .get("candidate")
        .and_then(|value| value.as_struct())
        .ok_or_else(|| bad("candidate signal without a candidate object"))?;
    let candidate = init
        .get("candidate")
        .and_then(|value| value.as_str())
        .ok_or_else(|| bad("candidate.candidate is not a string"))?;
    check_candidate_line(candidate)?;
    let sdp_mline_index = match init.get("sdpMLineIndex") {
        None => None,
        Some(value) if value.as_f64().is_none() && value.as_str().is_none() && value.as_bool().is_none() => {
            // JSON null, as browsers send for a candidate without an index.
            None
        }
        Some(value) => Some(
            value
                .as_f64()
                .filter(|index| index.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(index))
                .ok_or_else(|| bad("candidate.sdpMLineIndex is not a small whole number"))?
                as u16,
        ),
    };
    let sdp_mid = match init.get("sdpMid") {
        None => None,
        Some(value) => match value.as_str() {
            Some(mid) => Some(mid.to_owned()),
            None if value.as_f64().is_some() || value.as_bool().is_some() => {
                return Err(bad("candidate.sdpMid is not a string"));
            }
            None => None,
        },
    };
    Ok(RTCIceCandidateInit {
        candidate: candidate.to_owned(),
        sdp_mid,
        sdp_mline_index,
        ..Default::default()
    })
}

/// Checks the shape of an RFC 8839 `candidate:` attribute, so that a malformed one is refused
/// when it arrives rather than failing quietly inside ICE later:
/// `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...`.
/// The empty string is the end-of-candidates marker browsers send.
fn check_candidate_line(line: &str) -> Result<(), TransportError> {
    if line.is_empty() {
        return Ok(());
    }
    let body = line.strip_prefix("candidate:").unwrap_or(line);
    let fields: Vec<&str> = body.split_ascii_whitespace().collect();
    let well_formed = fields.len() >= 8
        && fields[1].parse::<u16>().is_ok()
        && ["udp", "tcp"].contains(&fields[2].to_ascii_lowercase().as_str())
        && fields[3].parse::<u32>().is_ok()
        && !fields[4].is_empty()
        && fields[5].parse::<u16>().is_ok()
        && fields[6] == "typ"
        && ["host", "srflx", "prflx", "relay"].contains(&fields[7]);
    if well_formed { Ok(()) } else { Err(bad(format!("malformed ICE candidate {line:?}"))) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n";

    #[test]
    fn descriptions_round_trip() {
        let offer = Signal::Offer(RTCSessionDescription::offer(SDP.to_owned()).unwrap());
        let payload = offer.to_struct();
        let data = payload.get("data").unwrap().as_struct().unwrap();
        assert_eq!(data.fields[0].key, "type", "DXOS writes type before sdp");
        assert_eq!(data.get("type").unwrap().as_str(), Some("offer"));
        match Signal::parse(&payload).unwrap() {
            Signal::Offer(description) => assert_eq!(description.sdp, SDP),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn candidates_round_trip_with_dxos_fields() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";
        let init = RTCIceCandidateInit { candidate: line.into(), ..Default::default() };
        let payload = Signal::Candidate(init).to_struct();
        let inner = payload.get("data").unwrap().as_struct().unwrap().get("candidate").unwrap();
        let inner = inner.as_struct().unwrap();
        assert_eq!(inner.get("sdpMLineIndex").unwrap().as_f64(), Some(0.0));
        assert_eq!(inner.get("sdpMid").unwrap().as_str(), Some("0"));
        match Signal::parse(&payload).unwrap() {
            Signal::Candidate(init) => {
                assert_eq!(init.candidate, line);
                assert_eq!(init.sdp_mline_index, Some(0));
                assert_eq!(init.sdp_mid.as_deref(), Some("0"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn malformed_signals_are_refused() {
        let candidate = |value: Struct| {
            Struct::new().with("data", Struct::new().with("type", "candidate").with("candidate", value))
        };
        for bad in [
            Struct::new(),
            Struct::new().with("data", "offer"),
            Struct::new().with("data", Struct::new().with("sdp", SDP)),
            Struct::new().with("data", Struct::new().with("type", "pranswer").with("sdp", SDP)),
            Struct::new().with("data", Struct::new().with("type", "offer")),
            Struct::new().with("data", Struct::new().with("type", "offer").with("sdp", 5.0)),
            Struct::new().with("data", Struct::new().with("type", "answer").with("sdp", "not sdp")),
            Struct::new().with("data", Struct::new().with("type", "candidate")),
            candidate(Struct::new()),
            candidate(Struct::new().with("candidate", "candidate:garbage")),
            candidate(
                Struct::new()
                    .with("candidate", "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
                    .with("sdpMLineIndex", -1.0),
            ),
        ] {
            let result = Signal::parse(&bad);
            assert!(matches!(result, Err(TransportError::BadSignal(_))), "{bad:?} gave {result:?}");
        }
    }

    #[test]
    fn sdps_compare_as_dxos_compares_them() {
        let repeated = SDP.replace("a=mid:0\r\n", "a=mid:0\r\na=mid:0\r\n");
        assert!(same_sdp(SDP, SDP));
        assert!(same_sdp(SDP, &repeated), "a line repeated within its section is ignored");
        assert!(!same_sdp(SDP, &SDP.replace("a=mid:0", "a=mid:1")));
        assert!(!same_sdp(SDP, &format!("{SDP}a=extra\r\n")));
    }

    #[test]
    fn end_of_candidates_is_accepted() {
        let payload = Struct::new().with(
            "data",
            Struct::new().with("type", "candidate").with("candidate", Struct::new().with("candidate", "")),
        );
        assert!(matches!(Signal::parse(&payload), Ok(Signal::Candidate(init)) if init.candidate.is_empty()));
    }
}
