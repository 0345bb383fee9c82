//! A log file rotated by size between whole lines, surviving file-system races.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

/// `file_rotate` renames and prunes; this decides when, so that a line is never split across two files
/// (its `ContentLimit::Bytes` cuts at the exact byte, mid-line).
pub(crate) struct RotatingFile {
    path: PathBuf,
    keep: usize,
    max_bytes: u64,
    size: u64,
    /// `None` after a failed rebuild; retried on the next write.
    inner: Option<FileRotate<AppendCount>>,
}

impl RotatingFile {
    /// Opens (creating it and its folder) the file at `path`, to be rotated when the next line
    /// would take it over `max_bytes`, keeping `keep` older files.
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        if max_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "traffic log max_bytes must be above 0",
            ));
        }
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("traffic log path {} names no file", path.display()),
            ));
        }
        // file_rotate panics or silently drops lines on these errors: surface them here instead.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let size = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .metadata()?
            .len();
        let mut file = RotatingFile {
            path: path.to_owned(),
            keep,
            max_bytes,
            size,
            inner: None,
        };
        file.rebuild()
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(file)
    }

    pub(crate) fn rebuild(&mut self) -> Result<(), String> {
        self.inner = None;
        let (path, keep) = (self.path.clone(), self.keep);
        let inner = guard(|| {
            FileRotate::new(
                path,
                AppendCount::new(keep),
                ContentLimit::None,
                Compression::None,
                None,
            )
        })?;
        self.size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        self.inner = Some(inner);
        Ok(())
    }

    /// Writes a batch of whole lines: in one write when it fits in the current file, else line by
    /// line so that rotation still falls between lines. The first error is returned, after the rest.
    pub(crate) fn write_lines(&mut self, batch: &[u8]) -> io::Result<()> {
        if self.size + batch.len() as u64 <= self.max_bytes {
            return self.write_line(batch);
        }
        let mut first_error = None;
        for line in batch.split_inclusive(|&b| b == b'\n') {
            if let Err(e) = self.write_line(line) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the line whole. A failed rotation is reported, but the line still goes to the current file:
    /// an oversized file is better than a lost record.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.inner.is_none() {
            self.rebuild().map_err(io::Error::other)?;
        }
        let mut rotation_error = None;
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            let rotated = match self.inner.as_mut() {
                Some(inner) => guard(|| inner.rotate()).and_then(|r| r.map_err(|e| e.to_string())),
                None => Err("no open file".into()),
            };
            // file_rotate may be left holding no file (and would then drop writes silently), or with
            // a stale list of old files: start over from what is on disk.
            match rotated {
                Ok(()) if self.path.exists() => self.size = 0,
                Ok(()) => {
                    rotation_error = Some("rotation left no log file".to_owned());
                    self.rebuild().map_err(io::Error::other)?;
                }
                Err(e) => {
                    rotation_error = Some(format!("rotation failed: {e}"));
                    self.rebuild().map_err(io::Error::other)?;
                }
            }
        }
        let Some(inner) = self.inner.as_mut() else {
            return Err(io::Error::other("no open file"));
        };
        inner.write_all(line)?;
        inner.flush()?;
        self.size += line.len() as u64;
        match rotation_error {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(()),
        }
    }
}

/// file_rotate asserts on file-system races (a file created behind its back): a panic there must
/// become a counted write error, not a failed request.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| "file_rotate panicked".to_owned())
}
