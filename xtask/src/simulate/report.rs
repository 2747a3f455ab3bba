//! The summary of a run: a human table and the same figures as one JSON object.

use std::{fmt::Write as _, time::Duration};

use mesh_swarm::sim::Latency;
use serde_json::{Value, json};

use super::{
    args::Options,
    runner::{Outcome, percentile},
};

/// How the figures were computed, printed with them.
const METHOD: &str = "metrics on snapshots of the graph of connections both ends see as up; \
broadcast = flood from 4 seeded sources per sample over that snapshot (Dijkstra): each peer forwards \
to every neighbour but its sender one after another, each send taking the message's Teleport wire \
size (a gossip announce measured through a real muxer) over the uplink bandwidth, then the modelled \
pair latency; diameter exact up to 400 peers, else a lower bound \
(BFS from 4 seeded nodes plus a double sweep); signal messages = swarm messages, PeerAvailable and \
PeerLeft delivered by the model";

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn latency_json(latency: &Latency) -> Value {
    match *latency {
        Latency::Fixed(delay) => json!({ "fixed_ms": ms(delay) }),
        Latency::Uniform { min, max } => json!({ "uniform_ms": [ms(min), ms(max)] }),
        Latency::LogNormal { median, sigma } => {
            json!({ "lognormal": { "median_ms": ms(median), "sigma": sigma } })
        }
    }
}

fn latency_text(latency: &Latency) -> String {
    match *latency {
        Latency::Fixed(delay) => format!("{} ms", ms(delay)),
        Latency::Uniform { min, max } => format!("{}–{} ms", ms(min), ms(max)),
        Latency::LogNormal { median, sigma } => {
            format!("log-normal, median {} ms, sigma {sigma}", ms(median))
        }
    }
}

fn bandwidth_text(options: &Options) -> String {
    options.bandwidth.map_or("unlimited".to_owned(), |bits| format!("{} Mbit/s", bits as f64 / 1e6))
}

fn view(options: &Options) -> Value {
    options.view.map_or(json!("all"), |v| json!(v))
}

/// The JSON summary (no wall-clock figures, so the same seed gives the same bytes).
pub(crate) fn json(options: &Options, outcome: &Outcome) -> Value {
    let arrivals = &outcome.broadcast_arrivals;
    let stats = outcome.stats;
    let signal = stats.messages + stats.available + stats.left;
    let last = outcome.samples.last();
    json!({
        "options": {
            "peers": options.peers,
            "topology": options.topology.name(),
            "seed": options.seed,
            "duration_s": options.duration.as_secs(),
            "churn_per_s": options.churn,
            "churn_from_s": options.churn_from.as_secs(),
            "latency": latency_json(&options.latency),
            "loss": options.loss,
            "bandwidth_bit_per_s": options.bandwidth,
            "message_bytes": options.message_bytes,
            "partition": options.partition.map(|p| json!({
                "at_s": p.at.as_secs(), "for_s": p.length.as_secs(), "groups": p.groups,
            })),
            "sample_s": options.sample.as_secs(),
            "view": view(options),
        },
        "method": METHOD,
        "summary": {
            "converged_at_s": outcome.converged_at,
            "converged_99_at_s": outcome.converged_99_at,
            "reconnected_after_heal_at_s": outcome.reconnected_after_heal_at,
            "final_peers": outcome.final_peers,
            "final_components": last.map(|s| s.components),
            "final_diameter": last.map(|s| s.diameter),
            "max_components": outcome.samples.iter().map(|s| s.components).max(),
            "peers_ever": outcome.peers_ever,
            "churn_joins": outcome.joins,
            "churn_returning": outcome.returns,
            "churn_crashes": outcome.crashes,
            "churn_clean_leaves": outcome.clean_leaves,
            "degree_histogram": outcome.degree_histogram,
            "broadcast": {
                "wire_bytes_per_hop": outcome.broadcast_wire_bytes,
                "delivery_ratio": round3(outcome.broadcast_ratio),
                "p50_ms": ms(percentile(arrivals, 50.0)),
                "p90_ms": ms(percentile(arrivals, 90.0)),
                "p99_ms": ms(percentile(arrivals, 99.0)),
                "max_ms": ms(arrivals.last().copied().unwrap_or_default()),
            },
            "signal": {
                "swarm_messages": stats.messages,
                "peer_available": stats.available,
                "peer_left": stats.left,
                "retried": stats.retried,
                "undeliverable": stats.undeliverable,
                "per_peer": round3(signal as f64 / outcome.peers_ever.max(1) as f64),
            },
        },
        "samples": outcome.samples.iter().map(|s| json!({
            "t_s": s.at_secs,
            "peers": s.peers,
            "edges": s.edges,
            "components": s.components,
            "largest_component": s.largest_component,
            "degree_min": s.min_degree,
            "degree_mean": round3(s.mean_degree),
            "degree_max": s.max_degree,
            "at_target": round3(s.at_target),
            "diameter": s.diameter,
            "diameter_exact": s.diameter_exact,
            "broadcast_ratio": round3(s.broadcast_ratio),
            "broadcast_p50_ms": ms(s.broadcast_p50),
            "broadcast_p99_ms": ms(s.broadcast_p99),
            "partitioned": s.partitioned,
        })).collect::<Vec<_>>(),
    })
}

fn secs(at: Option<u64>) -> String {
    at.map_or_else(|| "never".to_owned(), |s| format!("{s} s"))
}

/// The human table, with the wall time of the run.
pub(crate) fn table(options: &Options, outcome: &Outcome, wall: Duration) -> String {
    let arrivals = &outcome.broadcast_arrivals;
    let stats = outcome.stats;
    let signal = stats.messages + stats.available + stats.left;
    let mut out = String::new();
    let view = options.view.map_or("all".to_owned(), |v| v.to_string());
    let partition = options.partition.map_or("none".to_owned(), |p| {
        format!("{} groups at {} s for {} s", p.groups, p.at.as_secs(), p.length.as_secs())
    });
    let rows: Vec<(&str, String)> = vec![
        (
            "run",
            format!(
                "{} peers, {}, seed {}, {} s, churn {}/s from {} s, latency {}, loss {}, view {}",
                options.peers,
                options.topology.name(),
                options.seed,
                options.duration.as_secs(),
                options.churn,
                options.churn_from.as_secs(),
                latency_text(&options.latency),
                options.loss,
                view
            ),
        ),
        ("partition", partition),
        (
            "broadcast message",
            format!(
                "{} content bytes = {} bytes on the wire per hop (gossip announce over Teleport), uplink {}",
                options.message_bytes,
                outcome.broadcast_wire_bytes,
                bandwidth_text(options)
            ),
        ),
        ("time to converge (all at target)", secs(outcome.converged_at)),
        ("time to converge (99% at target)", secs(outcome.converged_99_at)),
        ("one component again after heal", secs(outcome.reconnected_after_heal_at)),
        (
            "churn",
            format!(
                "{} joins ({} returning), {} crashes, {} clean leaves, {} peers at the end",
                outcome.joins, outcome.returns, outcome.crashes, outcome.clean_leaves, outcome.final_peers
            ),
        ),
        ("degree histogram at the end", histogram(&outcome.degree_histogram)),
        (
            "broadcast delivery ratio",
            format!("{:.4} (mean over samples and sources)", outcome.broadcast_ratio),
        ),
        (
            "broadcast latency p50/p90/p99/max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                ms(percentile(arrivals, 50.0)),
                ms(percentile(arrivals, 90.0)),
                ms(percentile(arrivals, 99.0)),
                ms(arrivals.last().copied().unwrap_or_default())
            ),
        ),
        (
            "signal messages per peer",
            format!(
                "{:.1} ({} swarm, {} available, {} left; {} retried, {} undeliverable)",
                signal as f64 / outcome.peers_ever.max(1) as f64,
                stats.messages,
                stats.available,
                stats.left,
                stats.retried,
                stats.undeliverable
            ),
        ),
        ("wall time", format!("{:.2} s", wall.as_secs_f64())),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<34} {value}");
    }
    let _ = writeln!(
        out,
        "\n{:>6} {:>6} {:>7} {:>5} {:>8} {:>5} {:>6} {:>9} {:>6} {:>8} {:>8}",
        "t (s)", "peers", "comps", "deg", "mean", "max", "diam", "target", "bcast", "p50 ms", "p99 ms"
    );
    for s in &outcome.samples {
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>7} {:>5} {:>8.2} {:>5} {:>5}{} {:>9.3} {:>6.3} {:>8.1} {:>8.1}{}",
            s.at_secs,
            s.peers,
            s.components,
            s.min_degree,
            s.mean_degree,
            s.max_degree,
            s.diameter,
            if s.diameter_exact { " " } else { "~" },
            s.at_target,
            s.broadcast_ratio,
            ms(s.broadcast_p50),
            ms(s.broadcast_p99),
            if s.partitioned { "  (partitioned)" } else { "" }
        );
    }
    let _ = writeln!(out, "\n(deg = min degree, ~ = diameter lower bound)\n{METHOD}");
    out
}

fn histogram(histogram: &[usize]) -> String {
    let parts: Vec<String> = histogram
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(degree, count)| format!("{degree}:{count}"))
        .collect();
    parts.join(" ")
}
