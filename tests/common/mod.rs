//! Test harness: real `weft router` processes on loopback addresses of their own. Each test takes
//! a distinct block `127.0.<block>.0/24`, so tests running in parallel never share an address or
//! port, and every process is killed when its handle drops, also when the test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

pub struct Router {
    child: Option<Child>,
    pub ip: Ipv4Addr,
    pub name: String,
    pub nickname: String,
    dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Options of one router.
#[derive(Clone, Default)]
pub struct RouterOpts {
    pub conn_limit: Option<u32>,
    pub peers: Vec<String>,
    pub extra: Vec<String>,
    pub name: Option<String>,
    /// Where the database lives (`<dir>/weave-net`); the router's own temporary directory
    /// otherwise.
    pub db_dir: Option<std::path::PathBuf>,
    /// `--handshake-timeout` (default here 1s, so that tests of silent clients are quick).
    pub handshake_timeout: Option<String>,
    /// `--nickname` (default here `r<block>-<index>`).
    pub nickname: Option<String>,
    /// Environment variables of the router process, besides the test's own.
    pub env: Vec<(String, String)>,
}

pub fn ip(block: u8, index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block, index)
}

pub fn peer_name(block: u8, index: u8) -> String {
    format!("00:00:00:00:{block:02x}:{index:02x}")
}

impl Router {
    pub fn start(block: u8, index: u8, opts: RouterOpts) -> Router {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(block, index, opts, dir)
    }

    fn start_in(block: u8, index: u8, opts: RouterOpts, dir: Arc<tempfile::TempDir>) -> Router {
        let ip = ip(block, index);
        let name = opts.name.clone().unwrap_or_else(|| peer_name(block, index));
        let nickname = opts
            .nickname
            .clone()
            .unwrap_or_else(|| format!("r{block}-{index}"));
        let db_dir = opts
            .db_dir
            .clone()
            .unwrap_or_else(|| dir.path().to_path_buf());
        let mut args = vec![
            "router".to_string(),
            "--no-dataplane".into(),
            "--name".into(),
            name.clone(),
            "--nickname".into(),
            nickname.clone(),
            "--host".into(),
            ip.to_string(),
            "--http-addr".into(),
            format!("{ip}:6784"),
            "--metrics-addr".into(),
            format!("{ip}:6782"),
            "--db-prefix".into(),
            format!("{}/weave-net", db_dir.display()),
            "--heartbeat-interval".into(),
            "500ms".into(),
            "--read-timeout".into(),
            "2s".into(),
            "--handshake-timeout".into(),
            opts.handshake_timeout
                .clone()
                .unwrap_or_else(|| "1s".into()),
            "--log-level".into(),
            "info".into(),
        ];
        if let Some(limit) = opts.conn_limit {
            args.push("--conn-limit".into());
            args.push(limit.to_string());
        }
        args.extend(opts.extra.iter().cloned());
        args.extend(opts.peers.iter().cloned());
        let mut router = Router {
            child: None,
            ip,
            name,
            nickname,
            dir,
            args,
            env: opts.env.clone(),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        router.spawn();
        router
    }

    fn spawn(&mut self) {
        let mut child = Command::new(WEFT)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weft router");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
    }

    pub fn http_addr(&self) -> String {
        format!("{}:6784", self.ip)
    }

    pub fn mesh_addr(&self) -> String {
        format!("{}:6783", self.ip)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `GET /report`, or None while the router does not answer.
    pub fn report(&self) -> Option<Value> {
        get_json(&format!("http://{}/report", self.http_addr()))
    }

    /// Runs the CLI against this router.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WEFT)
            .arg("--http-addr")
            .arg(self.http_addr())
            .args(args)
            .output()
            .expect("run weft CLI")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same router again (same name, same database), as a restart after a crash.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Established links, as (peer name, address).
    pub fn established_links(&self) -> Vec<String> {
        self.report()
            .map(|report| {
                report["Connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["State"] == "established")
                    .filter_map(|c| c["Peer"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Destinations of our unicast routes.
    pub fn route_dests(&self) -> Vec<String> {
        self.report()
            .map(|report| {
                report["UnicastRoutes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["Dest"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn peer_names(&self) -> Vec<String> {
        self.report()
            .map(|report| {
                report["Peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["Name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- log of {} ({}) ---", self.nickname, self.ip);
            for line in self.log_lines() {
                eprintln!("{line}");
            }
        }
    }
}

/// A tmpfs of its own size on a fresh temporary directory, to run out of space on purpose;
/// unmounted (lazily, should a process still hold a file) and removed on drop. Needs root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_kib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(output.status.success(), "mount tmpfs: {output:?}");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes zeros to `name` until the file system is full.
    pub fn fill(&self, name: &str) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join(name)).expect("create filler");
        let block = vec![0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
        // What the page cache still holds must hit the limit now, not later.
        let _ = file.sync_all();
    }

    /// Removes the filler: the space is back.
    pub fn free(&self, name: &str) {
        std::fs::remove_file(self.path().join(name)).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

/// The body of a 2xx answer to `GET url` (5 s at most), none otherwise.
pub fn get_text(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .proxy(None)
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    response.body_mut().read_to_string().ok()
}

pub fn get_json(url: &str) -> Option<Value> {
    serde_json::from_str(&get_text(url)?).ok()
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Routers `1..=count` of a block, all started with router 1 as their only peer.
pub fn star(block: u8, count: u8, opts: RouterOpts) -> Vec<Router> {
    let first = Router::start(block, 1, opts.clone());
    let seed = vec![first.mesh_addr()];
    let mut routers = vec![first];
    for index in 2..=count {
        routers.push(Router::start(
            block,
            index,
            RouterOpts {
                peers: seed.clone(),
                ..opts.clone()
            },
        ));
    }
    routers
}

/// True when every router has a unicast route to every other one.
pub fn fully_routed(routers: &[Router]) -> bool {
    routers.iter().all(|router| {
        let dests = router.route_dests();
        routers
            .iter()
            .filter(|other| other.name != router.name)
            .all(|other| dests.contains(&other.name))
    })
}

/// Follows `Via` hops from `from` to `to` across the routers' own reports; the hop count.
pub fn hops(routers: &[Router], from: usize, to: &str) -> Option<usize> {
    let mut at = from;
    for hop in 1..=routers.len() {
        let report = routers[at].report()?;
        let via = report["UnicastRoutes"]
            .as_array()?
            .iter()
            .find(|r| r["Dest"] == to)?["Via"]
            .as_str()?
            .to_string();
        if via == to {
            return Some(hop);
        }
        at = routers.iter().position(|r| r.name == via)?;
    }
    None
}
