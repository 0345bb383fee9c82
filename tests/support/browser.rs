//! Debian's `chromium`, headless, as an admin's browser: the DOM after load, or a screenshot.
//! Every run has a fresh profile, a deadline, and its whole process group killed when it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one Chromium run may take on a loaded 2-core machine.
pub const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// Where the tests keep what they produce for a person to look at (`target/test-artifacts/`).
pub fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Chromium's process group, killed (and the leader reaped) when dropped.
struct Group(Option<std::process::Child>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // The renderer and helper processes share the leader's group: kill them all.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `chromium --headless … <extra> <url>` to completion; panics past [`BROWSER_LIMIT`].
fn chromium(extra: &[String], url: &str) -> std::process::Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut group = Group(Some(
        cmd.spawn()
            .expect("spawn chromium (tests/run.sh installs Debian's chromium package)"),
    ));
    let child = group.0.as_mut().expect("child");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = std::time::Instant::now() + BROWSER_LIMIT;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chromium {extra:?} {url} did not finish within {BROWSER_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(group);
    std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The DOM of `url` once loaded (`--dump-dom`).
pub async fn dump_dom(url: &str) -> String {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".into()], &url))
        .await
        .expect("the chromium thread");
    assert!(
        out.status.success(),
        "chromium --dump-dom: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 1280x2000 screenshot of `url` written to `path` (`--screenshot`).
pub async fn screenshot(url: &str, path: &Path) {
    let url = url.to_owned();
    let args = vec![
        format!("--screenshot={}", path.display()),
        "--window-size=1280,2000".to_owned(),
        "--hide-scrollbars".to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || chromium(&args, &url))
        .await
        .expect("the chromium thread");
    assert!(
        out.status.success(),
        "chromium --screenshot: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
