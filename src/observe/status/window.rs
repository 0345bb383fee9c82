//! Request counts over the last hour (by the minute) and the last day (by the hour), per outcome:
//! fixed arrays, so the memory of one counter never grows.

use serde::Serialize;

/// How a request ended, as the report counts it: 2xx, 4xx or 5xx as the client saw them,
/// `refused` when the proxy answered a client fault itself, `other` for 1xx/3xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ClientError,
    ServerError,
    Refused,
    Other,
}

impl Outcome {
    /// The outcome of a final `status`; `answered_by_proxy` when no upstream answer came back.
    pub fn of(status: u16, answered_by_proxy: bool) -> Outcome {
        match status {
            400..=499 if answered_by_proxy => Outcome::Refused,
            200..=299 => Outcome::Ok,
            400..=499 => Outcome::ClientError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests by outcome, as `/status.json` shows them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: u64,
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    pub refused: u64,
    pub other: u64,
}

impl Counts {
    fn add(&mut self, by_outcome: &[u32; 5]) {
        let [ok, client, server, refused, other] = by_outcome.map(u64::from);
        self.ok += ok;
        self.client_error += client;
        self.server_error += server;
        self.refused += refused;
        self.other += other;
        self.requests += ok + client + server + refused + other;
    }

    pub fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.refused += other.refused;
        self.other += other.other;
    }
}

/// One bucket: the period it counts (minutes or hours since the epoch) and its counts.
type Bucket = (u64, [u32; 5]);

/// Counts in 60 minute buckets and 24 hour buckets; a bucket from an older period is reset
/// when its slot comes round again.
#[derive(Debug, Clone)]
pub struct Window {
    minutes: [Bucket; 60],
    hours: [Bucket; 24],
}

impl Default for Window {
    fn default() -> Self {
        Window {
            minutes: [(u64::MAX, [0; 5]); 60],
            hours: [(u64::MAX, [0; 5]); 24],
        }
    }
}

impl Window {
    /// Counts one request at `now_secs` (seconds since the epoch).
    pub fn add(&mut self, now_secs: u64, outcome: Outcome) {
        bump(&mut self.minutes, now_secs / 60, outcome);
        bump(&mut self.hours, now_secs / 3600, outcome);
    }

    /// The last 60 minutes, the current one included.
    pub fn last_hour(&self, now_secs: u64) -> Counts {
        sum(&self.minutes, now_secs / 60)
    }

    /// The last 24 hours, the current one included.
    pub fn last_day(&self, now_secs: u64) -> Counts {
        sum(&self.hours, now_secs / 3600)
    }
}

fn bump<const N: usize>(buckets: &mut [Bucket; N], period: u64, outcome: Outcome) {
    let slot = &mut buckets[(period % N as u64) as usize];
    if slot.0 != period {
        *slot = (period, [0; 5]);
    }
    let n = &mut slot.1[outcome.index()];
    *n = n.saturating_add(1);
}

fn sum<const N: usize>(buckets: &[Bucket; N], now: u64) -> Counts {
    let mut counts = Counts::default();
    for (period, by_outcome) in buckets {
        if *period <= now && now - *period < N as u64 {
            counts.add(by_outcome);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fall_out_of_the_hour_and_the_day_as_time_passes() {
        let mut w = Window::default();
        let t0 = 1_800_000_000;
        w.add(t0, Outcome::Ok);
        w.add(t0 + 10, Outcome::ServerError);
        w.add(t0 + 61, Outcome::Refused);
        let hour = w.last_hour(t0 + 61);
        assert_eq!(
            (hour.requests, hour.ok, hour.server_error, hour.refused),
            (3, 1, 1, 1)
        );
        // 59 minutes later the first minute's two are gone from the hour, not from the day.
        let later = t0 + 61 + 59 * 60;
        assert_eq!(w.last_hour(later).requests, 1);
        assert_eq!(w.last_day(later).requests, 3);
        assert_eq!(w.last_day(t0 + 25 * 3600).requests, 0);
        // A slot coming round again starts from zero: the first minute's two are not counted.
        w.add(t0 + 3600, Outcome::ClientError);
        let hour = w.last_hour(t0 + 3600);
        assert_eq!((hour.requests, hour.refused, hour.client_error), (2, 1, 1));
    }

    #[test]
    fn outcomes_read_like_the_report() {
        assert_eq!(Outcome::of(201, false), Outcome::Ok);
        assert_eq!(Outcome::of(409, false), Outcome::ClientError);
        assert_eq!(Outcome::of(401, true), Outcome::Refused);
        assert_eq!(Outcome::of(504, true), Outcome::ServerError);
        assert_eq!(Outcome::of(302, false), Outcome::Other);
    }
}
