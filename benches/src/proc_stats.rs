//! Process figures read from Linux's `/proc`: resident memory, CPU time and open files, plus
//! raising the open-file limit that thousands of sockets need.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// The resident set size of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS line in /proc/<pid>/status")?;
    let kib = line.trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("VmRSS {kib:?} is not a number"))
}

/// CPU time (user + system, all threads) used so far by process `pid`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    let after_name = stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |index: usize| -> Result<u64> {
        let field = fields.get(index).context("short /proc/<pid>/stat")?;
        field.parse().with_context(|| format!("stat field {field:?} is not a number"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / USER_HZ))
}

/// CPU time the whole machine has spent busy (all cores, every process and the kernel), from the
/// first line of `/proc/stat`.
pub fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map_while(|field| field.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    let busy: u64 =
        ticks.iter().enumerate().filter(|(index, _)| !matches!(index, 3 | 4)).map(|(_, t)| t).sum();
    Ok(Duration::from_secs_f64(busy as f64 / USER_HZ))
}

/// Raises this process's soft limit on open files to its hard limit and returns the new limit.
/// Child processes inherit it.
pub fn raise_open_file_limit() -> Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")
}

/// Raises this process's limit on open files to at least `needed` and returns the new soft limit;
/// fails, saying what to do, when it cannot. The soft limit goes up to the hard limit first; past
/// that only a privileged process (`CAP_SYS_RESOURCE`) can raise the hard limit, up to the
/// kernel's `fs.nr_open`. Child processes inherit the limit.
pub fn ensure_open_file_limit(needed: u64) -> Result<u64> {
    let raised = raise_open_file_limit()?;
    if raised >= needed {
        return Ok(raised);
    }
    if let Err(err) = rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed) {
        bail!(
            "this run needs {needed} open files but the limit is {raised} and raising it failed ({err}): \
             only a process with CAP_SYS_RESOURCE may raise the hard limit, so raise it before starting \
             (`ulimit -Hn {needed}` in a privileged shell, `nofile` in /etc/security/limits.conf, \
             `LimitNOFILE=` under systemd, `--ulimit nofile={needed}` under docker), with \
             `sysctl fs.nr_open` at least {needed}"
        );
    }
    Ok(needed)
}

/// The number of file descriptors process `pid` has open (the entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Result<usize> {
    let entries =
        std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("listing /proc/{pid}/fd"))?;
    Ok(entries.count())
}
