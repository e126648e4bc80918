//! A cluster made of network namespaces, for the data-plane tests and the CNI plugin's: an
//! underlay bridge in a namespace of its own (or veth pairs between two namespaces), "nodes"
//! (namespaces with a `weft router`), and "pods" (namespaces wired to a node's bridge with `weft
//! attach`, or by the plugin). Every name carries the test's tag and the process id, and
//! everything is removed on drop, also when a test fails (the routers' logs are printed then).
//! The weft crate's tests and the plugin's share it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `weft` binary of this build, next to the running test binary. Cargo builds it before
/// the weft crate's own tests run; another package's tests (the plugin's) build it on first use.
pub fn weft() -> &'static str {
    static WEFT: OnceLock<String> = OnceLock::new();
    WEFT.get_or_init(|| {
        // target/<profile>/deps/<test binary> → target/<profile>/weft
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir: PathBuf = exe
            .parent()
            .and_then(Path::parent)
            .expect("a target/<profile>/deps directory")
            .to_path_buf();
        let path = profile_dir.join("weft");
        // Cargo names the package whose tests run; the weft package's are built with its binary.
        if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("weft") && path.is_file() {
            return path.to_string_lossy().into_owned();
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "weft", "--bin", "weft"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for weft");
        assert!(status.success(), "cargo build -p weft failed");
        assert!(path.is_file(), "no weft binary at {}", path.display());
        path.to_string_lossy().into_owned()
    })
}

/// Runs a command and fails the test with its output when it fails; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `ip` and fails the test with its stderr when it fails.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

pub fn in_netns(netns: &str, program: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .output()
        .expect("run ip netns exec")
}

pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// A node: its namespace and underlay address (198.51.100.<10 + index>, RFC 5737).
#[derive(Clone, Debug)]
pub struct Node {
    pub ns: String,
    pub ip: String,
    pub index: u8,
}

/// The namespaces and processes of one test, removed on drop.
pub struct Lab {
    tag: String,
    underlay: Option<String>,
    namespaces: Vec<String>,
    /// Routers in the order they were started.
    routers: Vec<Child>,
    /// Where the routers serve their metrics (see [`Lab::serve_metrics_on`]).
    metrics_addr: String,
    dir: tempfile::TempDir,
}

impl Lab {
    /// `tag` must be unique among the tests of the crate (it names every namespace).
    pub fn new(tag: &str) -> Self {
        Self {
            tag: tag.to_string(),
            underlay: None,
            namespaces: Vec::new(),
            routers: Vec::new(),
            metrics_addr: "127.0.0.1:6782".to_string(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh namespace `weft-<tag>-<what>-<pid>` with loopback up.
    pub fn netns(&mut self, what: &str) -> String {
        let name = format!("weft-{}-{what}-{}", self.tag, std::process::id());
        // Left over from a killed run with the same pid: start clean.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The namespace holding the underlay bridge, made on first use.
    fn underlay(&mut self) -> String {
        if let Some(underlay) = &self.underlay {
            return underlay.clone();
        }
        let underlay = self.netns("underlay");
        ip(&["-n", &underlay, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &underlay, "link", "set", "br0", "up"]);
        self.underlay = Some(underlay.clone());
        underlay
    }

    /// Wires namespace `ns` to the underlay bridge: its `underlay0` gets `address`/24, and the
    /// bridge's side of the pair is named `port` (unique within the lab, at most 15 bytes).
    fn attach_to_underlay(&mut self, ns: &str, port: &str, address: &str) {
        let underlay = self.underlay();
        ip(&[
            "link",
            "add",
            "underlay0",
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &underlay,
        ]);
        ip(&["-n", &underlay, "link", "set", port, "master", "br0", "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "underlay0",
        ]);
        ip(&["-n", ns, "link", "set", "underlay0", "up"]);
    }

    /// A node on the shared underlay (made with the first node or host).
    pub fn node(&mut self, index: u8) -> Node {
        let ns = self.netns(&format!("node{index}"));
        let address = format!("198.51.100.{}", 10 + index);
        self.attach_to_underlay(&ns, &format!("node{index}"), &address);
        Node {
            ns,
            ip: address,
            index,
        }
    }

    /// A namespace `weft-<tag>-<what>-<pid>` on the underlay with `address` (198.51.100.x, below
    /// the nodes' .11 and up) that runs no router: a service the nodes reach, such as an API
    /// server. Returns the namespace's name.
    pub fn host(&mut self, what: &str, address: &str) -> String {
        let ns = self.netns(what);
        self.attach_to_underlay(&ns, what, address);
        ns
    }

    /// Starts a router in `node`, named 00:00:00:00:<tag byte>:<index>, with `extra` options and
    /// `peers` to connect to.
    pub fn router(&mut self, node: &Node, name_byte: u8, extra: &[&str], peers: &[&Node]) {
        let name = format!("00:00:00:00:{name_byte:02x}:{:02x}", node.index);
        let nickname = format!("node{}", node.index);
        let mut args = vec!["--name", &name, "--nickname", &nickname, "--host", &node.ip];
        args.extend_from_slice(extra);
        args.extend(peers.iter().map(|peer| peer.ip.as_str()));
        self.spawn_router(&node.ns, &format!("node{}", node.index), &args);
    }

    /// Routers started from now on serve their metrics on `addr` (default 127.0.0.1:6782, out
    /// of reach of other namespaces), e.g. 0.0.0.0:6782 for a Prometheus on the underlay.
    pub fn serve_metrics_on(&mut self, addr: &str) {
        self.metrics_addr = addr.to_string();
    }

    /// Starts `weft router ARGS` in namespace `ns` with the HTTP API on its 127.0.0.1:6784, the
    /// metrics on 127.0.0.1:6782 (see [`Lab::serve_metrics_on`]) and a database of its own; the
    /// log goes to `<log_name>.log`.
    pub fn spawn_router(&mut self, ns: &str, log_name: &str, args: &[&str]) {
        let db = format!("{}/{log_name}/weave-net", self.dir.path().display());
        let metrics_addr = self.metrics_addr.clone();
        let mut command = vec![
            "netns",
            "exec",
            ns,
            weft(),
            "router",
            "--http-addr",
            "127.0.0.1:6784",
            "--metrics-addr",
            &metrics_addr,
            "--db-prefix",
            &db,
        ];
        command.extend_from_slice(args);
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(&command)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a router");
        self.routers.push(child);
    }

    /// Joins two namespaces with a veth pair carrying `addr_a`/`addr_b` (CIDR), up.
    pub fn link(&mut self, a: &str, addr_a: &str, b: &str, addr_b: &str) {
        let pid = std::process::id() % 100_000;
        let count = self.namespaces.len();
        let (veth_a, veth_b) = (format!("wa{pid}x{count}"), format!("wb{pid}x{count}"));
        ip(&[
            "link", "add", &veth_a, "netns", a, "type", "veth", "peer", "name", &veth_b, "netns", b,
        ]);
        ip(&["-n", a, "addr", "add", addr_a, "dev", &veth_a]);
        ip(&["-n", b, "addr", "add", addr_b, "dev", &veth_b]);
        ip(&["-n", a, "link", "set", &veth_a, "up"]);
        ip(&["-n", b, "link", "set", &veth_b, "up"]);
    }

    /// The test's scratch directory (databases, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops every router (SIGKILL), leaving devices and namespaces.
    pub fn stop_routers(&mut self) {
        for router in &mut self.routers {
            let _ = router.kill();
            let _ = router.wait();
        }
        self.routers.clear();
    }

    /// Kills the `index`th router started (SIGKILL: no clean-up of its own).
    pub fn kill_router(&mut self, index: usize) {
        let router = &mut self.routers[index];
        router.kill().expect("kill a router");
        router.wait().expect("reap a router");
    }

    fn log_path(&self, node: &Node) -> PathBuf {
        self.dir.path().join(format!("node{}.log", node.index))
    }

    pub fn log(&self, node: &Node) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    /// A pod namespace attached to `node`'s bridge with `address` (CIDR).
    pub fn pod(&mut self, node: &Node, what: &str, address: &str) -> String {
        let pod = self.netns(what);
        // The router makes the bridge once it has started.
        let bridge_up = || {
            in_netns(&node.ns, "ip", &["link", "show", "weave"])
                .status
                .success()
        };
        assert!(
            wait_until(Duration::from_secs(20), bridge_up),
            "no bridge in {}",
            node.ns
        );
        let output = in_netns(
            &node.ns,
            weft(),
            &["attach", "--netns", &pod, "--ip", address],
        );
        assert!(output.status.success(), "attach {pod}: {output:?}");
        pod
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                all.push_str(&format!("--- {}\n", entry.path().display()));
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_routers();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for name in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Loads an nftables script into a namespace (`nft -f -`), failing the test if nft refuses it.
pub fn nft(netns: &str, script: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft (install nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "nft {script}: {output:?}");
}

/// `weave status connections` of the node's router.
pub fn connections(node: &Node) -> String {
    let output = in_netns(
        &node.ns,
        weft(),
        &["--http-addr", "127.0.0.1:6784", "status", "connections"],
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The established connection lines of the node that use `overlay` ("fastdp" or "sleeve").
pub fn links_using(node: &Node, overlay: &str) -> usize {
    connections(node)
        .lines()
        .filter(|line| line.contains(&format!("established {overlay}")))
        .count()
}

/// One TCP exchange from `client_ns` to `server_ip:port` served in `server_ns`.
pub fn tcp_works(client_ns: &str, server_ns: &str, server_ip: &str, port: u16) -> bool {
    let server = format!(
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
         s.bind(('0.0.0.0',{port}));s.listen();s.settimeout(5);c,_=s.accept();c.sendall(b'pong')"
    );
    let mut listener = Command::new("ip")
        .args(["netns", "exec", server_ns, "python3", "-c", &server])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = format!(
        "import socket;s=socket.create_connection(('{server_ip}',{port}),timeout=3);print(s.recv(4).decode())"
    );
    let output = in_netns(client_ns, "python3", &["-c", &client]);
    let _ = listener.kill();
    let _ = listener.wait();
    String::from_utf8_lossy(&output.stdout).trim() == "pong"
}

/// Every pod opens a TCP connection to every other pod (`pods` = (namespace, address) pairs):
/// returns the pairs that failed, as "from -> to".
pub fn tcp_all_pairs(pods: &[(String, String)], port: u16) -> Vec<String> {
    let expected = pods.len() - 1;
    let server = format!(
        "import socket\n\
         s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('0.0.0.0',{port}));s.listen(16);s.settimeout(20)\n\
         for _ in range({expected}):\n\
         \x20 c,_=s.accept();c.sendall(b'pong');c.close()\n"
    );
    let mut servers: Vec<Child> = pods
        .iter()
        .map(|(ns, _)| {
            Command::new("ip")
                .args(["netns", "exec", ns, "python3", "-c", &server])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut failed = Vec::new();
    for (from, _) in pods {
        for (to, address) in pods.iter().filter(|(ns, _)| ns != from) {
            let client = format!(
                "import socket;s=socket.create_connection(('{address}',{port}),timeout=5);\
                 print(s.recv(4).decode())"
            );
            let output = in_netns(from, "python3", &["-c", &client]);
            if String::from_utf8_lossy(&output.stdout).trim() != "pong" {
                failed.push(format!("{from} -> {to}"));
            }
        }
    }
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    failed
}

/// A TCP connection that carries a steady trickle of numbered messages for `seconds`: the
/// server prints how many bytes arrived in order and intact, the client exits non-zero if its
/// connection broke.
pub struct Stream {
    server: Option<Child>,
    client: Option<Child>,
}

impl Stream {
    pub fn start(
        client_ns: &str,
        server_ns: &str,
        server_ip: &str,
        port: u16,
        seconds: u32,
    ) -> Self {
        let server = format!(
            "import socket\n\
             s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',{port}));s.listen();s.settimeout(10)\n\
             c,_=s.accept();c.settimeout({timeout})\n\
             data=b''\n\
             while True:\n\
             \x20 chunk=c.recv(65536)\n\
             \x20 if not chunk: break\n\
             \x20 data+=chunk\n\
             expected=b''.join(b'%08d' % i for i in range(len(data)//8))\n\
             print(len(data) if data==expected else -1)\n",
            timeout = seconds + 30
        );
        let server = Command::new("ip")
            .args(["netns", "exec", server_ns, "python3", "-c", &server])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let client = format!(
            "import socket,time\n\
             s=socket.create_connection(('{server_ip}',{port}),timeout=10);s.settimeout({timeout})\n\
             end=time.time()+{seconds};i=0\n\
             while time.time()<end:\n\
             \x20 s.sendall(b''.join(b'%08d' % (i+k) for k in range(128)));i+=128\n\
             \x20 time.sleep(0.01)\n\
             s.shutdown(socket.SHUT_WR);s.recv(1);print(i*8)\n",
            timeout = seconds + 30
        );
        let client = Command::new("ip")
            .args(["netns", "exec", client_ns, "python3", "-c", &client])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            server: Some(server),
            client: Some(client),
        }
    }

    /// Waits for both ends: (bytes the client sent, bytes the server received intact), or the
    /// failure's output.
    pub fn finish(mut self) -> Result<(i64, i64), String> {
        let (Some(client), Some(server)) = (self.client.take(), self.server.take()) else {
            return Err("already finished".to_string());
        };
        let client = client.wait_with_output().map_err(|e| e.to_string())?;
        let server = server.wait_with_output().map_err(|e| e.to_string())?;
        let number = |output: &Output| {
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{output:?}"))
        };
        Ok((number(&client)?, number(&server)?))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        for child in [self.client.as_mut(), self.server.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
