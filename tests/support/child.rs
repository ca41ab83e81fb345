//! The hotline binary as a child process, on ports it picks itself.
//!
//! Ports chosen by the test (bind, note, close, pass on) race every other test that binds
//! port 0 meanwhile: the child can lose its port and exit while `/healthz` on that port is
//! answered by another test's hotline. Here the child binds port 0 and the test reads the
//! addresses from the child's own log line, so the hotline it talks to is its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A running `hotline serve` and where it listens.
pub struct Child {
    pub process: tokio::process::Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// stdout and stderr of every start, appended.
    pub log: PathBuf,
}

impl Child {
    /// Kills the process (SIGKILL: no clean-up at all) and waits for it.
    pub async fn kill(&mut self) {
        self.process.start_kill().unwrap();
        self.process.wait().await.unwrap();
    }
}

/// Starts `bin serve --config config --data-dir data` with SIP and HTTP on free loopback
/// ports, its output appended to `data/hotline.log`, and waits up to 10 s for its
/// `hotline running` line and then its `/healthz`.
pub async fn serve(bin: &str, config: &Path, data: &Path) -> Child {
    serve_at(bin, config, data, "127.0.0.1:0").await
}

/// [`serve`] with SIP on `sip_listen` (a restarted node of a cluster comes back where the
/// proxy sends its calls).
pub async fn serve_at(bin: &str, config: &Path, data: &Path, sip_listen: &str) -> Child {
    let log = data.join("hotline.log");
    let start = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let out = || -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap()
            .into()
    };
    let mut process = tokio::process::Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--sip-listen", sip_listen])
        .args(["--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "hotline=debug")
        .stdout(out())
        .stderr(out())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        let text = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[start.min(text.len())..]).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("hotline running")) {
            let (sip, http) = (field(line, "sip="), field(line, "http="));
            super::wait_healthy(http).await;
            assert!(process.try_wait().unwrap().is_none(), "the hotline exited");
            return Child {
                process,
                sip,
                http,
                log,
            };
        }
        if let Some(status) = process.try_wait().unwrap() {
            panic!("the hotline exited ({status}):\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `hotline running` line within 10 s in {}", log.display());
}

/// `name=ADDR` from a log line.
fn field(line: &str, name: &str) -> SocketAddr {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len();
    let value = line[at..].split_whitespace().next().unwrap_or_default();
    value
        .parse()
        .unwrap_or_else(|e| panic!("{name}{value}: {e}"))
}

/// Prints the end of a child's log when the test fails (the data directory goes with the
/// test, and the log with it).
pub struct ShowLog(pub PathBuf);

impl Drop for ShowLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(200).collect();
            eprintln!("--- {} (last {} lines) ---", self.0.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
