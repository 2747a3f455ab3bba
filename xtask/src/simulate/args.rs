//! The flags of `cargo xtask simulate`, parsed by hand with clear errors.

use std::{path::PathBuf, time::Duration};

use mesh_swarm::sim::Latency;

/// Which topology every peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopologyKind {
    /// Everyone connects to everyone.
    Full,
    /// Every leaf connects to one centre (the first peer, which never churns).
    Star,
    /// MMST with DXOS's parameters and the ring.
    Mmst,
}

impl TopologyKind {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Star => "star",
            Self::Mmst => "mmst",
        }
    }
}

/// A partition: at `at`, split into `groups` groups for `length`, then heal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionSpec {
    pub(crate) at: Duration,
    pub(crate) length: Duration,
    pub(crate) groups: u32,
}

/// Everything a run depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub(crate) peers: usize,
    pub(crate) topology: TopologyKind,
    pub(crate) seed: u64,
    pub(crate) duration: Duration,
    /// Joins per second, and as many leaves per second (Poisson).
    pub(crate) churn: f64,
    /// When churn starts (so a cold start can converge first).
    pub(crate) churn_from: Duration,
    /// How one-way latencies spread over the pairs of peers.
    pub(crate) latency: Latency,
    pub(crate) loss: f64,
    /// Each peer's uplink in bits per second; `None` for unlimited.
    pub(crate) bandwidth: Option<u64>,
    /// Content bytes of each broadcast message.
    pub(crate) message_bytes: usize,
    pub(crate) partition: Option<PartitionSpec>,
    /// Metrics sampling interval.
    pub(crate) sample: Duration,
    /// Bounded signaling view; `None` tells everyone about everyone.
    pub(crate) view: Option<usize>,
    pub(crate) json: bool,
    /// Where the SVG goes; `None` means `target/simulate.svg` in the workspace.
    pub(crate) svg: Option<PathBuf>,
}

/// Peer counts above which the default view is bounded.
const AUTO_VIEW_ABOVE: usize = 300;
/// The bounded view used by default for large runs.
const AUTO_VIEW: usize = 48;
/// The most peers a run may start with.
const MAX_PEERS: usize = 100_000;
/// The largest broadcast message (Teleport carries up to 4 MiB per message).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The longest delay a pair may have, in milliseconds.
const MAX_LATENCY_MS: u64 = 60_000;
/// The longest run.
const MAX_DURATION_SECS: u64 = 24 * 3600;

pub(crate) const FLAGS: &str = "  --peers N            peers at the start (default 1000, at most 100000)
  --topology T         full | star | mmst (default mmst)
  --seed S             seed of everything random (default 1)
  --duration SECS      virtual seconds to run (default 300)
  --churn RATE         joins per second, and as many leaves (default 1; 0 for none)
  --churn-from SECS    when churn starts, so the cold start can converge first (default 0)
  --latency SPEC       one-way latency per pair: MS (fixed), MS:JIT (uniform in MS±JIT) or
                       lognormal:MEDIAN[:SIGMA] (a long tail; SIGMA default 0.5) (default 50:20)
  --loss P             probability a swarm message attempt is lost (default 0)
  --bandwidth MBIT     each peer's uplink in Mbit/s, which broadcasts queue on (default 10;
                       0 for unlimited)
  --message-bytes N    content bytes per broadcast message, sent as a gossip announce over
                       Teleport (default 1024)
  --partition AT:FOR[:GROUPS]  split the network at AT s for FOR s into GROUPS (default 2) groups
  --sample SECS        metrics sampling interval (default 10)
  --view N|all         peers the signal server introduces each newcomer to (default: all up to
                       300 peers, 48 above)
  --json               print the summary as one JSON object on stdout
  --svg PATH           where to write the plot (default target/simulate.svg)";

impl Default for Options {
    fn default() -> Self {
        Self {
            peers: 1000,
            topology: TopologyKind::Mmst,
            seed: 1,
            duration: Duration::from_secs(300),
            churn: 1.0,
            churn_from: Duration::ZERO,
            latency: Latency::Uniform { min: Duration::from_millis(30), max: Duration::from_millis(70) },
            loss: 0.0,
            bandwidth: Some(10_000_000),
            message_bytes: 1024,
            partition: None,
            sample: Duration::from_secs(10),
            view: None,
            json: false,
            svg: None,
        }
    }
}

impl Options {
    /// The view in effect: the one asked for, or the default for this many peers.
    pub(crate) fn effective_view(&self, explicit: bool) -> Option<usize> {
        if explicit {
            self.view
        } else if self.peers > AUTO_VIEW_ABOVE {
            Some(AUTO_VIEW)
        } else {
            None
        }
    }
}

/// Parses the flags after `simulate`.
pub(crate) fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut view_given = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().copied().ok_or_else(|| format!("{flag} needs a value"));
        match *flag {
            "--peers" => options.peers = bounded(flag, number(flag, value()?)?, 1, MAX_PEERS)?,
            "--topology" => {
                options.topology = match value()? {
                    "full" => TopologyKind::Full,
                    "star" => TopologyKind::Star,
                    "mmst" => TopologyKind::Mmst,
                    other => return Err(format!("--topology: expected full, star or mmst, got {other:?}")),
                }
            }
            "--seed" => options.seed = number(flag, value()?)?,
            "--duration" => {
                let secs = bounded(flag, number(flag, value()?)?, 1, MAX_DURATION_SECS)?;
                options.duration = Duration::from_secs(secs);
            }
            "--churn" => options.churn = fraction(flag, value()?, 1000.0)?,
            "--churn-from" => {
                let secs = bounded(flag, number(flag, value()?)?, 0, MAX_DURATION_SECS)?;
                options.churn_from = Duration::from_secs(secs);
            }
            "--latency" => options.latency = latency(value()?)?,
            "--loss" => options.loss = fraction(flag, value()?, 1.0)?,
            "--bandwidth" => {
                let mbit = fraction(flag, value()?, 100_000.0)?;
                options.bandwidth = (mbit > 0.0).then(|| (mbit * 1e6).round().max(1.0) as u64);
            }
            "--message-bytes" => {
                options.message_bytes = bounded(flag, number(flag, value()?)?, 1, MAX_MESSAGE_BYTES)?;
            }
            "--partition" => options.partition = Some(partition(value()?)?),
            "--sample" => {
                let secs = bounded(flag, number(flag, value()?)?, 1, MAX_DURATION_SECS)?;
                options.sample = Duration::from_secs(secs);
            }
            "--view" => {
                view_given = true;
                options.view = match value()? {
                    "all" => None,
                    n => Some(bounded(flag, number(flag, n)?, 2, MAX_PEERS)?),
                };
            }
            "--svg" => options.svg = Some(PathBuf::from(value()?)),
            "--json" => options.json = true,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    options.view = options.effective_view(view_given);
    Ok(options)
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{flag}: {text:?} is not a whole number in range"))
}

fn bounded<T: PartialOrd + std::fmt::Display>(flag: &str, value: T, min: T, max: T) -> Result<T, String> {
    if value < min || value > max {
        return Err(format!("{flag}: {value} is outside {min}..={max}"));
    }
    Ok(value)
}

fn fraction(flag: &str, text: &str, max: f64) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{flag}: {text:?} is not a number"))?;
    if !value.is_finite() || !(0.0..=max).contains(&value) {
        return Err(format!("{flag}: {value} is outside 0..={max}"));
    }
    Ok(value)
}

fn latency(text: &str) -> Result<Latency, String> {
    let flag = "--latency";
    let ms = |text: &str| -> Result<u64, String> { bounded(flag, number(flag, text)?, 0, MAX_LATENCY_MS) };
    let parts: Vec<&str> = text.split(':').collect();
    match parts[..] {
        [fixed] => Ok(Latency::Fixed(Duration::from_millis(ms(fixed)?))),
        ["lognormal", median] | ["lognormal", median, _] => {
            let sigma = parts.get(2).map_or(Ok(0.5), |s| fraction(flag, s, 2.0))?;
            let median = Duration::from_millis(bounded(flag, ms(median)?, 1, MAX_LATENCY_MS)?);
            Ok(Latency::LogNormal { median, sigma })
        }
        [mean, jitter] => {
            let (mean, jitter) = (ms(mean)?, ms(jitter)?);
            if jitter > mean {
                return Err(format!("{flag}: need JIT <= MS, got {mean}:{jitter}"));
            }
            let (min, max) = (Duration::from_millis(mean - jitter), Duration::from_millis(mean + jitter));
            Ok(Latency::Uniform { min, max })
        }
        _ => Err(format!("{flag}: expected MS, MS:JIT or lognormal:MEDIAN[:SIGMA], got {text:?}")),
    }
}

fn partition(text: &str) -> Result<PartitionSpec, String> {
    let flag = "--partition";
    let parts: Vec<&str> = text.split(':').collect();
    let (at, length, groups) = match parts[..] {
        [at, length] => (at, length, "2"),
        [at, length, groups] => (at, length, groups),
        _ => return Err(format!("{flag}: expected AT:FOR[:GROUPS], got {text:?}")),
    };
    Ok(PartitionSpec {
        at: Duration::from_secs(bounded(flag, number(flag, at)?, 0, MAX_DURATION_SECS)?),
        length: Duration::from_secs(bounded(flag, number(flag, length)?, 1, MAX_DURATION_SECS)?),
        groups: bounded(flag, number(flag, groups)?, 2, 64)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.peers, 1000);
        assert_eq!(options.view, Some(AUTO_VIEW));
        let options =
            parse(&["--peers", "50", "--topology", "star", "--latency", "10:5", "--partition", "30:20:3"])
                .unwrap();
        assert_eq!(options.topology, TopologyKind::Star);
        assert_eq!(options.view, None);
        let ms = Duration::from_millis;
        assert_eq!(options.latency, Latency::Uniform { min: ms(5), max: ms(15) });
        assert_eq!(options.partition.map(|p| p.groups), Some(3));
        assert_eq!(parse(&["--latency", "40"]).unwrap().latency, Latency::Fixed(ms(40)));
        assert_eq!(
            parse(&["--latency", "lognormal:60"]).unwrap().latency,
            Latency::LogNormal { median: ms(60), sigma: 0.5 }
        );
        assert_eq!(
            parse(&["--latency", "lognormal:60:1.2"]).unwrap().latency,
            Latency::LogNormal { median: ms(60), sigma: 1.2 }
        );
        assert_eq!(parse(&["--bandwidth", "2.5"]).unwrap().bandwidth, Some(2_500_000));
        assert_eq!(parse(&["--bandwidth", "0"]).unwrap().bandwidth, None);
        assert_eq!(parse(&["--message-bytes", "64"]).unwrap().message_bytes, 64);
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        for bad in [
            &["--peers"][..],
            &["--peers", "0"],
            &["--peers", "x"],
            &["--topology", "ring"],
            &["--loss", "2"],
            &["--loss", "NaN"],
            &["--latency", "5:10"],
            &["--latency", "lognormal:0"],
            &["--latency", "lognormal:50:3"],
            &["--latency", "normal:50"],
            &["--latency", "1:2:3"],
            &["--bandwidth", "-1"],
            &["--message-bytes", "0"],
            &["--partition", "10"],
            &["--view", "1"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
