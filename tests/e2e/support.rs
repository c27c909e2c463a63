//! Runs the real `hark` binary on port 0 and talks to it over real sockets.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hark_loadtest::server::Scrape;

use crate::fakes::Fakes;
use hark_loadtest::{Caller, CallerOptions};

/// A fresh directory under the system's temp dir.
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn repo_path(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub struct Hark {
    child: Child,
    pub addr: String,
    logs: Arc<Mutex<String>>,
    banner: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Drop for Hark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hark {
    /// Starts `hark serve` with the e2e policy, fault injection on, and `env` set.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(&["--policy", &repo_path("tests/policies/e2e.toml")], env)
    }

    /// Starts `hark serve` with every provider live, pointed at `fakes`.
    pub fn start_live(fakes: &Fakes, env: &[(&str, &str)]) -> Self {
        Self::start_live_with(fakes, &repo_path("tests/policies/live.toml"), env)
    }

    pub fn start_live_with(fakes: &Fakes, policy: &str, env: &[(&str, &str)]) -> Self {
        // Twilio's credentials are for `hark doctor`; the simulated callers
        // do not sign their requests.
        let mut all: Vec<(String, String)> = fakes
            .env()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("TWILIO_"))
            .collect();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_with(&["--policy", policy], &all)
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn("127.0.0.1:0", args, env, None)
    }

    /// `hark serve --listen LISTEN ARGS…` with `env`, in `cwd` if given.
    pub fn spawn(
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&std::path::Path>,
    ) -> Self {
        // Each instance keeps its records apart (SQLite in its own data dir)
        // unless the test says otherwise.
        let data = temp_dir("hark-e2e");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hark"));
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .args(["serve", "--listen", listen])
            .args(args)
            .env("HARK_CALL__FAULT_INJECTION", "true")
            .env("HARK_DATA_DIR", &data)
            .env(
                "HARK_DATABASE_URL",
                format!("sqlite://{}/hark.db?mode=rwc", data.display()),
            )
            .env("HARK_LOG", "info,hark_actors=debug")
            // A developer's real keys must never reach a test (or a real API).
            .env_remove("DEEPGRAM_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ELEVENLABS_API_KEY")
            .env_remove("TWILIO_ACCOUNT_SID")
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("HARK_STREAM_TOKEN_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hark");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let banner = Arc::new(Mutex::new(String::new()));
        let out = Arc::clone(&banner);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => panic!("hark did not start:\n{}", logs.lock().unwrap()),
        };
        Self {
            child,
            addr,
            logs,
            banner,
            http: reqwest::Client::new(),
        }
    }

    /// What `hark serve` printed on stdout (the banner).
    pub fn banner(&self) -> String {
        self.banner.lock().unwrap().clone()
    }

    /// The RSS of the `hark` process, in bytes (from /proc).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn media_url(&self) -> String {
        format!("ws://{}/twilio/media", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Waits for the process to exit; its status code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn metrics(&self) -> Scrape {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text)
    }

    /// Waits until `series` reaches `value` (series absent counts as 0).
    pub async fn wait_metric(&self, series: &str, value: f64, limit: Duration) -> f64 {
        self.wait_metric_until(series, |v| v == value, limit).await
    }

    /// Polls `series` until `done` holds or `limit` passes; the last value seen.
    pub async fn wait_metric_until(
        &self,
        series: &str,
        done: impl Fn(f64) -> bool,
        limit: Duration,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.metrics().await.get(series);
            if done(v) || tokio::time::Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn caller(&self, n: u64) -> Caller {
        Caller::connect(CallerOptions::numbered(&self.media_url(), n))
            .await
            .unwrap()
    }

    pub async fn caller_with(&self, n: u64, f: impl FnOnce(&mut CallerOptions)) -> Caller {
        let mut opts = CallerOptions::numbered(&self.media_url(), n);
        f(&mut opts);
        Caller::connect(opts).await.unwrap()
    }
}

/// Runs `hark doctor` against `fakes` (their env, then `env`); exit code and stdout.
pub async fn doctor(fakes: &Fakes, policy: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut all = fakes.env();
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let policy = policy.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["doctor", "--policy", &policy])
            .env_remove("DEEPGRAM_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ELEVENLABS_API_KEY")
            .env_remove("TWILIO_ACCOUNT_SID")
            .env_remove("TWILIO_AUTH_TOKEN")
            .envs(all)
            .output()
            .expect("run hark doctor");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    })
    .await
    .unwrap()
}

pub fn speech(name: &str) -> &'static [u8] {
    hark_loadtest::fixtures::speech(name).unwrap()
}

/// Generous timeouts: the suite runs many calls at once on a 2-core machine.
pub const GREETING: Duration = Duration::from_secs(10);
pub const QUIET: Duration = Duration::from_millis(400);
