//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, built and run on the stable toolchain.
//!
//! cargo-fuzz's default sanitizer (AddressSanitizer) needs `-Zsanitizer`, a nightly-only flag;
//! `--sanitizer none` needs none, so the stable toolchain builds the targets with libFuzzer's
//! coverage instrumentation and debug assertions. Nothing is lost that matters here: the crates
//! forbid `unsafe`, so a memory error is not something ASan could find that Rust's own checks miss,
//! and libFuzzer still catches every panic (libfuzzer-sys aborts on one), timeout and out-of-memory.
//! Runs are about twice as fast without ASan, too.
//!
//! Each run starts from the corpus kept under the target dir, from seeds written anew from the
//! golden vectors (`seeds.rs`) and from every input that once broke the target
//! (`fuzz/regressions/<target>/`, kept in the repository, so each run replays them first); crashes
//! land in `fuzz/artifacts/<target>/`.

mod seeds;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// The targets in `fuzz/fuzz_targets/`.
pub(crate) const TARGETS: [&str; 7] =
    ["signal_server", "federation", "signal_client", "swarm", "teleport_stream", "rpc", "keys"];

/// Seconds each target runs in `--smoke`; seven targets make about three minutes.
const SMOKE_SECONDS: u64 = 25;
/// Seconds a single target runs unless told otherwise.
const DEFAULT_SECONDS: u64 = 300;
/// libFuzzer reports an input that runs longer than this many seconds as a hang.
const HANG_SECONDS: u64 = 10;

/// What to fuzz, and for how long.
struct Plan {
    targets: Vec<&'static str>,
    seconds: u64,
}

fn parse(args: &[&str]) -> Result<Plan> {
    let mut targets = Vec::new();
    let mut seconds = None;
    let mut smoke = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--smoke" => smoke = true,
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = Some(value.parse().with_context(|| format!("--seconds {value}: not a number"))?);
            }
            name => match TARGETS.iter().find(|target| **target == name) {
                Some(target) => targets.push(*target),
                None => {
                    bail!("unknown fuzz target {name:?}: expected --smoke or one of {}", TARGETS.join(", "))
                }
            },
        }
    }
    match (smoke, targets.is_empty()) {
        (true, true) => Ok(Plan { targets: TARGETS.to_vec(), seconds: seconds.unwrap_or(SMOKE_SECONDS) }),
        (false, false) => Ok(Plan { targets, seconds: seconds.unwrap_or(DEFAULT_SECONDS) }),
        _ => bail!("expected either --smoke or target names"),
    }
}

pub(crate) fn run(args: &[&str]) -> Result<()> {
    let plan = parse(args)?;
    let root = workspace_root();
    let target_dir = fuzz_target_dir(&root);
    install_cargo_fuzz()?;
    seeds::write_all(&root, &target_dir.join("seeds"))?;
    let mut build = vec!["fuzz", "build", "--sanitizer", "none", "--target-dir"];
    let target_dir_text = target_dir.to_string_lossy().into_owned();
    build.push(&target_dir_text);
    if plan.targets.len() == 1 {
        build.push(plan.targets[0]);
    }
    crate::run(&root, "cargo", &build)?;

    let mut failed = Vec::new();
    println!("{:<16} {:>10} {:>12} {:>8}  result", "target", "seconds", "executions", "exec/s");
    for target in &plan.targets {
        let outcome = run_target(&root, &target_dir, target, plan.seconds)?;
        println!(
            "{:<16} {:>10} {:>12} {:>8}  {}",
            target,
            plan.seconds,
            outcome.executions.map_or("?".to_owned(), |n| n.to_string()),
            outcome.per_second.map_or("?".to_owned(), |n| n.to_string()),
            if outcome.passed { "ok" } else { "FAILED" }
        );
        if !outcome.passed {
            eprintln!("--- {target}\n{}", outcome.report);
            failed.push(*target);
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {} (inputs in fuzz/artifacts/<target>/)", failed.join(", "));
    }
    Ok(())
}

/// Where the fuzz builds, corpora and seeds live: under the target dir, apart from normal builds
/// (the instrumented artifacts would otherwise replace them).
fn fuzz_target_dir(root: &Path) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    base.join("cargo-fuzz")
}

/// Installs cargo-fuzz from crates.io unless `cargo fuzz` already works.
fn install_cargo_fuzz() -> Result<()> {
    let works =
        Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|out| out.status.success());
    if works {
        return Ok(());
    }
    eprintln!("cargo-fuzz not found: installing it");
    crate::run(&workspace_root(), "cargo", &["install", "cargo-fuzz", "--locked"])
}

/// How one target's run went.
struct Outcome {
    passed: bool,
    executions: Option<u64>,
    per_second: Option<u64>,
    /// What went wrong, from the output, to show on failure.
    report: String,
}

fn run_target(root: &Path, target_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = target_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = target_dir.join("seeds").join(target);
    let regressions = root.join("fuzz/regressions").join(target);
    let output = Command::new("cargo")
        .current_dir(root)
        .args(["fuzz", "run", "--sanitizer", "none", "--target-dir"])
        .arg(target_dir)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .args(regressions.is_dir().then_some(&regressions))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={HANG_SECONDS}"))
        .arg("-print_final_stats=1")
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let text = String::from_utf8_lossy(&output.stderr);
    let stat = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
    };
    Ok(Outcome {
        passed: output.status.success(),
        executions: stat("stat::number_of_executed_units"),
        per_second: stat("stat::average_exec_per_sec"),
        report: failure_report(&text),
    })
}

/// The lines of a failed run's output that say what broke and how to reproduce it: the panic
/// message, libFuzzer's verdict, and cargo-fuzz's note naming the input.
fn failure_report(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let mut report: Vec<&str> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            report.extend(lines.iter().skip(index).take(2));
        } else if line.contains("ERROR: libFuzzer") || line.starts_with("SUMMARY:") {
            report.push(line);
        }
    }
    let trailer = lines.iter().position(|line| line.starts_with("Failing input"));
    let trailer = trailer.map_or(&lines[lines.len().saturating_sub(20)..], |start| &lines[start..]);
    report.extend(trailer.iter().take_while(|line| !line.starts_with("Error:")));
    report.join("\n")
}
