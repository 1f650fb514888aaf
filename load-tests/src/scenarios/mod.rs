//! The scenarios, and the report every run ends with.

pub mod abuse;
pub mod breakout;
pub mod chat;
pub mod connect;
pub mod dm;
pub mod drain;
pub mod fanout;
pub mod presence;

use serde::Serialize;

use crate::stats::Latency;

/// The one JSON line a run prints.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub connections: usize,
    pub sent: u64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    /// Messages acknowledged (committed) per second, for scenarios that send them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_per_s: Option<f64>,
    #[serde(flatten)]
    pub latency: Latency,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Each node's share, when several `--server-pid`s are given (in their order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_cpu_us_per_delivery: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadgen_cpu_us_per_delivery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kb_per_connection: Option<f64>,
    /// The most memory the server held at once during the run (`VmHWM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_kb: Option<u64>,
    /// Per-phase latencies, for scenarios with phases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions_stored: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions_expected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abuse: Option<abuse::AbuseReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<drain::DrainReport>,
}

/// One phase of a scenario: how many events it waited for and how long they took; for
/// scenarios that count them, what the server sent and spent per participant.
#[derive(Debug, Default, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub events: usize,
    #[serde(flatten)]
    pub latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_participant: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_participant: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_participant: Option<f64>,
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(value)),
        "" | "s" => Ok(std::time::Duration::from_secs(value)),
        "m" => Ok(std::time::Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: use ms, s or m")),
    }
}

/// Reads the number after `"key":` in a JSON text, without decoding the rest.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = &text[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}
