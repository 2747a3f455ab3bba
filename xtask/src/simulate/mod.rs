//! `cargo xtask simulate`: a whole swarm on virtual time — real swarm cores and topologies on
//! `mesh_swarm::sim::Sim`'s modelled signaling, messenger and transports — with a seeded network
//! model (a latency distribution, loss, uplink bandwidth, partitions), churn, and metrics sampled
//! over time: a summary table, the same as JSON with `--json`, and an SVG plot. The same flags
//! give byte-identical JSON and SVG.
//!
//! Teleport enters where it changes the figures, the broadcast: its wire size is measured by
//! sending a gossip announce through a real Teleport muxer (`wire.rs`), and each hop queues on the
//! sender's uplink at that size. Connections count as up once their modelled transport is (see
//! `report::METHOD`).

mod args;
mod graph;
mod report;
mod runner;
mod svg;
mod wire;

use std::{io::Write as _, path::PathBuf};

use anyhow::{Context, Result};

pub(crate) use args::FLAGS;

/// Runs `cargo xtask simulate <flags>` (from a release build); bad flags print an error and exit
/// with status 2.
pub(crate) fn run(flags: &[&str]) -> Result<()> {
    let options = match args::parse(flags) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}\n\ncargo xtask simulate [flags]\n{FLAGS}");
            std::process::exit(2);
        }
    };
    if cfg!(debug_assertions) {
        return rerun_in_release(flags);
    }
    let started = std::time::Instant::now();
    let outcome = runner::run(&options).map_err(anyhow::Error::msg)?;
    let wall = started.elapsed();
    let svg_path = options.svg.clone().unwrap_or_else(|| PathBuf::from("target/simulate.svg"));
    let svg_path = if svg_path.is_relative() && options.svg.is_none() {
        crate::workspace_root().join(svg_path)
    } else {
        svg_path
    };
    let (json, svg) = render(&options, &outcome);
    if let Some(parent) = svg_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&svg_path, svg).with_context(|| format!("writing {}", svg_path.display()))?;
    // Written, not printed: a closed pipe (`| head`) is an error to report, not a panic.
    let mut stdout = std::io::stdout().lock();
    if options.json {
        writeln!(stdout, "{json}")?;
        eprintln!("wall time {:.2} s; plot written to {}", wall.as_secs_f64(), svg_path.display());
    } else {
        write!(stdout, "{}", report::table(&options, &outcome, wall))?;
        writeln!(stdout, "plot written to {}", svg_path.display())?;
    }
    Ok(())
}

/// `cargo xtask` builds xtask in debug, which is an order of magnitude too slow for 10,000 peers:
/// like `cargo xtask bench`, run the simulation from a release build, with the same flags.
fn rerun_in_release(flags: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["run", "--release", "--quiet", "--package", "xtask", "--", "simulate"])
        .args(flags)
        .status()
        .context("running the release build of xtask")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// The JSON text and the SVG of a run: everything that must be byte-identical for one seed.
fn render(options: &args::Options, outcome: &runner::Outcome) -> (String, String) {
    let json = report::json(options, outcome).to_string();
    let title = format!(
        "{} peers, {}, seed {}, churn {}/s",
        options.peers,
        options.topology.name(),
        options.seed,
        options.churn
    );
    let svg = svg::render(&title, &outcome.samples, options.duration.as_secs());
    (json, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(flags: &[&str]) -> (String, String, runner::Outcome) {
        let options = args::parse(flags).unwrap();
        let outcome = runner::run(&options).unwrap();
        let (json, svg) = render(&options, &outcome);
        (json, svg, outcome)
    }

    #[test]
    fn same_seed_gives_byte_identical_json_and_svg() {
        let flags = [
            "--peers",
            "40",
            "--duration",
            "60",
            "--churn",
            "0.5",
            "--loss",
            "0.05",
            "--seed",
            "7",
            "--latency",
            "lognormal:40:0.8",
            "--bandwidth",
            "1",
        ];
        let (json_a, svg_a, _) = outputs(&flags);
        let (json_b, svg_b, _) = outputs(&flags);
        assert_eq!(json_a, json_b);
        assert_eq!(svg_a, svg_b);
        let (json_c, _, _) = outputs(&["--peers", "40", "--duration", "60", "--churn", "0.5", "--seed", "8"]);
        assert_ne!(json_a, json_c, "another seed gives another run");
    }

    #[test]
    fn a_slower_uplink_and_bigger_messages_slow_the_broadcast() {
        let run = |bandwidth: &str, bytes: &str| {
            let flags = ["--peers", "60", "--duration", "40", "--churn", "0", "--bandwidth", bandwidth];
            let (_, _, outcome) = outputs(&[&flags[..], &["--message-bytes", bytes]].concat());
            runner::percentile(&outcome.broadcast_arrivals, 50.0)
        };
        let fast = run("0", "1024");
        let slow = run("1", "1024");
        let slower = run("1", "16384");
        assert!(fast < slow && slow < slower, "{fast:?} < {slow:?} < {slower:?}");
    }

    #[test]
    fn partition_then_heal_reconverges() {
        let (_, _, outcome) =
            outputs(&["--peers", "40", "--duration", "150", "--churn", "0", "--partition", "60:30"]);
        let during = outcome.samples.iter().find(|s| s.at_secs == 80).unwrap();
        assert!(during.components >= 2, "split during the partition: {during:?}");
        assert!(outcome.converged_at.is_some_and(|at| at < 60), "converged before the split");
        let heal = outcome.reconnected_after_heal_at.expect("one component again after the heal");
        assert!(heal <= 90 + 40, "reconnected at {heal} s");
        assert_eq!(outcome.samples.last().unwrap().components, 1);
    }

    #[test]
    fn small_churn_run_stays_bounded() {
        let (_, _, outcome) =
            outputs(&["--peers", "60", "--duration", "120", "--churn", "1", "--view", "16"]);
        for sample in &outcome.samples {
            assert!(sample.max_degree <= 6, "degree stays bounded: {sample:?}");
            assert!(sample.peers <= 60 + 40, "population stays bounded: {sample:?}");
        }
        let last = outcome.samples.last().unwrap();
        assert!(last.largest_component * 10 >= last.peers * 9, "most peers stay in one component: {last:?}");
    }
}
