//! What `/proc` says about the servers and the machine: resident memory
//! (now and at its peak), CPU time and context switches of a process or of
//! a process with its children (nginx and Apache serve from children), and
//! each core's busy time.

use std::process::Command;

use anyhow::{Context, Result};

/// A process's resident memory and CPU time, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `utime + stime` in clock ticks.
    pub cpu_ticks: u64,
    /// Context switches of all its threads (voluntary and not) so far.
    pub context_switches: u64,
}

impl ProcStats {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`.
    pub fn of(pid: u32) -> Result<Self> {
        let rss_kib = status_kib(pid, "VmRSS")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3;
        // utime and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')').context("malformed /proc/<pid>/stat")? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?) };
        Ok(Self {
            rss_kib,
            cpu_ticks: tick(11)? + tick(12)?,
            context_switches: context_switches(pid)?,
        })
    }

    /// [`ProcStats::of`] summed over `pid` and every process below it (the
    /// workers a web server forks).
    pub fn of_tree(pid: u32) -> Result<Self> {
        let mut total = Self::of(pid)?;
        for child in descendants(pid) {
            // A child may end between the listing and the reading.
            if let Ok(s) = Self::of(child) {
                total.rss_kib += s.rss_kib;
                total.cpu_ticks += s.cpu_ticks;
                total.context_switches += s.context_switches;
            }
        }
        Ok(total)
    }
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …) in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Sets the peak resident memory (`VmHWM`) of `pid` back to its current
/// resident memory (`5` to `clear_refs`, see proc(5)), so that the next
/// peak read is of what happened after.
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("reset the peak RSS of process {pid} (write /proc/{pid}/clear_refs)"))
}

/// Every process below `pid` (children, their children, …), from the
/// parent ids in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the command name may hold spaces.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.split_off(1)
}

/// Context switches of every thread of `pid` so far (threads that ended
/// are not counted).
fn context_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// Busy, total and stolen time of each CPU so far, in clock ticks (`/proc/stat`).
pub fn cpu_times() -> Result<Vec<CoreTimes>> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut out = Vec::new();
    for line in stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")) {
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        out.push(CoreTimes {
            busy: total - idle,
            total,
            steal: v.get(7).copied().unwrap_or(0),
        });
    }
    Ok(out)
}

/// One core's times from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CoreTimes {
    /// Not idle (steal included).
    pub busy: u64,
    /// All.
    pub total: u64,
    /// Taken by the hypervisor for other machines while this one had work.
    pub steal: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> Result<u64> {
    let out = Command::new("getconf").arg("CLK_TCK").output().context("run getconf")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK did not print a number")
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    use super::*;

    #[test]
    fn a_process_tree_counts_the_children() {
        // The shell prints its child's id once the child exists.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let child: u32 = line.trim().parse().unwrap();
        let found = descendants(shell.id());
        let one = ProcStats::of(shell.id()).unwrap();
        let tree = ProcStats::of_tree(shell.id()).unwrap();
        let _ = Command::new("kill").arg(child.to_string()).status();
        shell.wait().unwrap();
        assert_eq!(found, vec![child]);
        assert!(tree.rss_kib > one.rss_kib, "the tree's RSS includes the child's");
    }

    #[test]
    fn the_peak_rss_can_be_reset() {
        let me = std::process::id();
        // 64 MiB touched and given back (an allocation this large is its own mapping).
        let mut big = vec![0u8; 64 << 20];
        big.iter_mut().step_by(4096).for_each(|b| *b = 1);
        std::hint::black_box(&big);
        drop(big);
        let peak = status_kib(me, "VmHWM").unwrap();
        reset_peak_rss(me).unwrap();
        let after = status_kib(me, "VmHWM").unwrap();
        assert!(after + 32 * 1024 < peak, "the peak of {peak} KiB is still {after} KiB");
    }
}
