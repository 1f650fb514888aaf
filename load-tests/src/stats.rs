//! Latency percentiles and the CPU time and memory of processes, read from /proc.

use serde::Serialize;

/// Latencies in microseconds, summarised.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn summarize(mut micros: Vec<u32>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let index = ((micros.len() as f64 - 1.0) * q).round() as usize;
        f64::from(micros[index.min(micros.len() - 1)]) / 1000.0
    };
    Latency { p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) }
}

/// CPU time (user + system) of a process, in microseconds.
pub fn cpu_micros(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks_per_second = 100; // USER_HZ, fixed at 100 on Linux.
    Some((utime + stime) * 1_000_000 / ticks_per_second)
}

/// Resident memory of a process, in kilobytes.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// The most resident memory the process has held since it started, in kilobytes.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let latency = summarize((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!((latency.p50_ms, latency.p99_ms, latency.max_ms), (51.0, 99.0, 100.0));
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(cpu_micros(None).is_some());
        assert!(rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
    }
}
