//! A real `deployql serve` process on a free port, killed when dropped.

use std::{net::SocketAddr, time::Duration};

use super::SECRET;

/// The bearer token `/metrics` asks for on a test server's API port.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// A child process killed when dropped, pass or fail.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port of 127.0.0.1 that nothing listens on (for a server process to take).
/// Whether this test runs as root (file permissions do not bind it).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

/// A `deployql serve` process on a free port, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: KillOnDrop,
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[]).await
    }

    /// Starts a server with extra environment variables (`CORS_ALLOWED_ORIGINS`, ...).
    pub async fn start_with(database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_binary(env!("CARGO_BIN_EXE_deployql"), database_url, env).await
    }

    /// Starts `binary` (another build of deployql, for a side-by-side benchmark).
    pub async fn start_binary(binary: &str, database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_command(&[binary], database_url, env).await
    }

    /// Starts a server as a user file permissions bind: `nobody` when this
    /// test runs as root (as in CI), else this test's own user.
    pub async fn start_unprivileged(database_url: &str, env: &[(&str, &str)]) -> Self {
        let binary = env!("CARGO_BIN_EXE_deployql");
        if is_root() {
            let setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];
            Self::start_command(&[&setpriv[..], &[binary]].concat(), database_url, env).await
        } else {
            Self::start_command(&[binary], database_url, env).await
        }
    }

    /// Starts `command` (a program and the arguments before deployql's own).
    async fn start_command(command: &[&str], database_url: &str, env: &[(&str, &str)]) -> Self {
        let binary = command;
        let env = [&[("JWT_SECRET", SECRET)], env].concat();
        // The free port can be taken by another test between `free_addr`
        // and the server's bind: then the server exits, and another port is tried.
        for _ in 0..3 {
            let mut server =
                Self::spawn(binary, database_url, &env, std::process::Stdio::inherit());
            if server.ready_unless_exited(Duration::from_secs(10)).await {
                return server;
            }
        }
        panic!("deployql exited at start three times");
    }

    /// Waits for `/readyz` to answer 200 (`true`) or the process to exit
    /// (`false`); panics if neither happens within `within`.
    async fn ready_unless_exited(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.ready_within(Duration::from_millis(100)).await {
                return true;
            }
            if self.child.0.try_wait().ok().flatten().is_some() {
                return false;
            }
        }
        panic!("deployql on {} did not become ready", self.addr);
    }

    /// Starts a server whose stderr (its log) is a pipe the caller reads, or
    /// leaves unread; does not wait for it.
    pub fn spawn_with_piped_log(
        database_url: &str,
        env: &[(&str, &str)],
    ) -> (Self, std::process::ChildStderr) {
        let env = [&[("JWT_SECRET", SECRET)], env].concat();
        let binary = env!("CARGO_BIN_EXE_deployql");
        let mut server = Self::spawn(&[binary], database_url, &env, std::process::Stdio::piped());
        let stderr = server.child.0.stderr.take().expect("stderr is piped");
        (server, stderr)
    }

    /// Starts a server that verifies tokens as `env` says (`JWKS_URL`, ...),
    /// without a shared secret, logging to `log`, and does not wait for it.
    pub fn spawn_with_log(database_url: &str, env: &[(&str, &str)], log: &std::path::Path) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        Self::spawn(&[env!("CARGO_BIN_EXE_deployql")], database_url, env, log.into())
    }

    fn spawn(
        program: &[&str],
        database_url: &str,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> Self {
        let addr = free_addr();
        let mut command = std::process::Command::new(program[0]);
        command
            .args(&program[1..])
            .arg("serve")
            .env_remove("JWT_SECRET")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .env("METRICS_TOKEN", METRICS_TOKEN);
        // An empty value unsets the variable.
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start deployql");
        Self { child: KillOnDrop(child), addr }
    }

    /// Waits up to 10 s for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        assert!(
            self.ready_within(Duration::from_secs(10)).await,
            "deployql on {} did not become ready",
            self.addr
        );
    }

    /// Whether `/readyz` answers 200 within `within`.
    pub async fn ready_within(&self, within: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            let ready = client.get(format!("http://{}/readyz", self.addr)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Starts a dev-mode server (no `JWT_SECRET`) and returns it with the
    /// demo token it prints.
    pub async fn start_dev(database_url: &str) -> (Self, String) {
        use std::io::BufRead;
        let addr = free_addr();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
            .arg("serve")
            .env_remove("JWT_SECRET")
            .env("DEV_MODE", "true")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start deployql");
        let stdout = child.stdout.take().expect("stdout");
        let server = Self { child: KillOnDrop(child), addr };
        let token = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix("export TOKEN=").map(str::to_owned))
        })
        .await
        .expect("read stdout")
        .expect("dev mode prints `export TOKEN=...`");
        (server, token)
    }

    /// A counter or gauge from `/metrics`, summed over its labels.
    pub async fn metric(&self, name: &str) -> u64 {
        self.try_metric(name).await.unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// A counter or gauge from `/metrics`, summed over its labels; `None`
    /// when the server has none of that name (a previous release, say).
    pub async fn try_metric(&self, name: &str) -> Option<u64> {
        let samples = self.scrape().await;
        let values: Vec<f64> = samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter_map(|sample| match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() as u64)
    }

    /// Every sample of `/metrics`, parsed as Prometheus parses it.
    pub async fn scrape(&self) -> Vec<prometheus_parse::Sample> {
        let url = format!("http://{}/metrics", self.addr);
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics");
        assert!(response.status().is_success(), "/metrics answered {}", response.status());
        let text = response.text().await.expect("metrics text");
        super::parse_metrics(&text)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The server's resident and peak memory in MiB, from /proc.
    pub fn memory_mb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// `count` servers on `database_url` with `env`, started together as an
/// orchestrator starts them (each once, no retry); panics, with its log, if
/// one exits at start, and returns once every one answers `/readyz`.
pub async fn start_all_at_once(
    database_url: &str,
    env: &[(&str, &str)],
    count: usize,
) -> Vec<(SocketAddr, KillOnDrop)> {
    let mut servers: Vec<_> = (0..count)
        .map(|_| {
            let addr = free_addr();
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
                .arg("serve")
                .env("DATABASE_URL", database_url)
                .env("JWT_SECRET", SECRET)
                .env("LISTEN_ADDR", addr.to_string())
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("deployql serve");
            (addr, KillOnDrop(child))
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (addr, child) in &mut servers {
        loop {
            let ready = reqwest::get(format!("http://{addr}/readyz")).await;
            if ready.is_ok_and(|response| response.status() == 200) {
                break;
            }
            if child.0.try_wait().expect("status").is_some() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.0.stderr.as_mut().expect("piped"), &mut stderr)
                    .ok();
                panic!("an instance exited at start: {stderr}");
            }
            assert!(std::time::Instant::now() < deadline, "{addr} did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    servers
}
