//! A real Kubernetes v1.20.2 cluster for the deployment test: `scripts/kube/cluster.sh` brings
//! up etcd, kube-apiserver, kube-controller-manager, kube-scheduler and N nodes (containerd,
//! kubelet, kube-proxy), each in network namespaces of its own, with the images this harness
//! builds imported on every node: Weft's, from `deploy/build-image.sh` with the binaries this
//! test run built, and the sandbox's `pause`. The test then drives it with a kubectl of the same
//! version, as an operator would.
//!
//! Names are unique to the run (`wc<pid>-…` namespaces and cgroups, `/var/tmp/wc<pid>`), and
//! dropping the cluster takes everything down, also when the test fails. On failure the logs of
//! every component and pod are kept under `target/cluster-logs/<name>` and the path is printed.

#![allow(dead_code)] // the test uses what it needs

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: CI is a 2-core machine, and a cluster of three nodes keeps it busy.
pub const WAIT: Duration = Duration::from_secs(180);
/// The image reference the test gives Weft's image; the manifest's is rewritten to it.
pub const IMAGE: &str = "localhost/weft:ci";

pub struct Cluster {
    name: String,
    dir: PathBuf,
    /// Images and the rewritten manifest; outside `dir`, which `down` removes.
    scratch: tempfile::TempDir,
    pub nodes: usize,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    repo().join("scripts/kube").join(name)
}

/// Runs `command`, panicking with its output unless it succeeds; returns stdout.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The directory of the binaries this test run built (`weft`, and the CNI plugin `weave-net`,
/// built here if this run did not build the workspace).
fn built_binaries() -> PathBuf {
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let dir = weft.parent().expect("binary directory").to_path_buf();
    let target_dir = dir.parent().expect("target directory");
    run(Command::new(env!("CARGO"))
        .current_dir(repo())
        // The whole workspace's binaries, so features unify as in `cargo test --workspace`
        // (which built them already) instead of building weft once more for the plugin alone.
        .args(["build", "--quiet", "--workspace", "--bins", "--target-dir"])
        .arg(target_dir));
    dir
}

impl Cluster {
    /// Builds the images, brings up the control plane and `nodes` nodes, and returns once every
    /// node is registered (NotReady: no network yet).
    pub fn up(nodes: usize) -> Cluster {
        let name = format!("wc{}", std::process::id());
        let dir = PathBuf::from(format!("/var/tmp/{name}"));
        let scratch = tempfile::Builder::new()
            .prefix("weft-cluster-")
            .tempdir_in("/var/tmp")
            .expect("scratch directory");
        let images = scratch.path().join("images");
        let started = Instant::now();
        run(Command::new(script("test-images.sh")).arg(&images));
        run(Command::new(repo().join("deploy/build-image.sh"))
            .arg("--binaries")
            .arg(built_binaries())
            .args(["--name", IMAGE, "--out"])
            .arg(images.join("weft.tar")));
        eprintln!("cluster: images built in {:?}", started.elapsed());
        let cluster = Cluster {
            name,
            dir,
            scratch,
            nodes,
        };
        let started = Instant::now();
        run(cluster
            .script_command("cluster.sh")
            .args(["up", &nodes.to_string()])
            .env("WEFT_CLUSTER_IMAGES", &images)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()));
        eprintln!(
            "cluster: {nodes} nodes registered in {:?}",
            started.elapsed()
        );
        cluster
    }

    fn script_command(&self, script_name: &str) -> Command {
        let mut command = Command::new(script(script_name));
        command
            .env("WEFT_CLUSTER_NAME", &self.name)
            .env("WEFT_CLUSTER_DIR", &self.dir);
        command
    }

    /// Where the test writes files it applies.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// `deploy/<file>` with only the image references and pull policies rewritten (the image
    /// is imported on every node, there is no registry); returns the copy's path.
    pub fn manifest(&self, file: &str) -> PathBuf {
        let original =
            std::fs::read_to_string(repo().join("deploy").join(file)).expect("read manifest");
        let mut images = 0;
        let rewritten: Vec<String> = original
            .lines()
            .map(|line| {
                let indent = &line[..line.len() - line.trim_start().len()];
                if line.trim_start().starts_with("image: ") {
                    images += 1;
                    format!("{indent}image: {IMAGE}")
                } else if line.trim_start().starts_with("imagePullPolicy: ") {
                    format!("{indent}imagePullPolicy: Never")
                } else {
                    line.to_string()
                }
            })
            .collect();
        assert!(images > 0, "no image in deploy/{file}");
        let path = self.scratch().join(file);
        std::fs::write(&path, rewritten.join("\n") + "\n").expect("write manifest");
        path
    }

    /// kubectl as cluster admin; its output, whatever its exit status.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.script_command("cluster.sh")
            .arg("kubectl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// kubectl as cluster admin, panicking unless it succeeds; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = self.kubectl_output(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        let path = self.scratch().join(format!(
            "apply-{}.yaml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::write(&path, yaml).expect("write yaml");
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }

    /// `kubectl get ARGS -o json`.
    pub fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl JSON")
    }

    /// Runs `command` in a pod's container (`kubectl exec -i`, stdin empty: busybox's applets
    /// misbehave with no stdin at all); the output whatever its status.
    pub fn exec(&self, namespace: &str, pod: &str, container: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", "-i", "-n", namespace, pod];
        if !container.is_empty() {
            args.extend(["-c", container]);
        }
        args.push("--");
        args.extend(command);
        self.kubectl_output(&args)
    }

    /// Runs `command` on node `index` (1-based): its network and mount namespaces, as a shell on
    /// the node would.
    pub fn on_node(&self, index: usize, command: &[&str]) -> Output {
        self.script_command("cluster.sh")
            .arg("node")
            .arg(index.to_string())
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("run on node")
    }

    /// Powers node `index` off: every process of it dies at once (containerd, kubelet, the
    /// pods, the router), and its network namespace goes away.
    pub fn power_off(&self, index: usize) {
        run(self
            .script_command("cluster.sh")
            .args(["power-off", &index.to_string()]));
    }

    /// The cluster's logs so far (component logs of the harness).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut down = self.script_command("cluster.sh");
        down.arg("down");
        if std::thread::panicking() {
            let keep = repo().join("target/cluster-logs").join(&self.name);
            eprintln!("cluster: keeping the logs in {}", keep.display());
            down.env("KEEP_LOGS", &keep);
        }
        match down.output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "cluster: down failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("cluster: cannot run cluster.sh down: {e}"),
        }
    }
}

/// Calls `check` every half second until it returns `Some`, or panics after `timeout` with
/// `what` and the last `None`-time explanation from `explain`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    explain: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                explain()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
