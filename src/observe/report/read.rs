//! Reading traffic logs: the fields of a record the report uses, one JSON line at a time.

use std::io::BufRead;

use serde::Deserialize;

use super::aggregate::Report;

/// The fields of a traffic record the report uses; `ts` and `status` make a line a record.
#[derive(Debug, Deserialize)]
pub(super) struct Line {
    pub(super) ts: String,
    pub(super) status: u16,
    #[serde(default)]
    pub(super) request_id: Option<String>,
    #[serde(default)]
    pub(super) route: Option<String>,
    #[serde(default)]
    pub(super) client: Option<String>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) upstream_status: Option<u16>,
    #[serde(default)]
    pub(super) auth: Option<String>,
    #[serde(default)]
    pub(super) op: Option<String>,
    #[serde(default)]
    pub(super) subject: Option<String>,
    #[serde(default)]
    pub(super) detail: Option<String>,
    #[serde(default, rename = "scimType")]
    pub(super) scim_type: Option<String>,
    #[serde(default)]
    pub(super) error: Option<String>,
}

impl Report {
    pub(super) fn read(&mut self, input: impl BufRead, name: &str) -> Result<(), String> {
        let mut input = input;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("{name}: {e}"))?;
            if n == 0 {
                return Ok(());
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(&buf) {
                Ok(line) => self.add(line),
                Err(_) => self.skipped += 1,
            }
        }
    }
}
