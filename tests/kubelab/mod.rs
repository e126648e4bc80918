//! A real Kubernetes API server for the router's tests: kube-apiserver v1.20.2 and etcd in a
//! namespace of the lab's own, on the lab's underlay at 198.51.100.2, so that routers in the
//! node namespaces reach it with `--kubeconfig` as they would reach a cluster's. The harness
//! makes its own PKI and static tokens for two identities, an admin and the router's
//! ServiceAccount `kube-system/weave-net`, and writes a kubeconfig for each. The test drives the
//! cluster as admin with `curl` run inside the API server's namespace; the router's RBAC comes
//! from `deploy/weave-net.yaml` itself, applied with the kubectl built beside the API server.
//!
//! The binaries come from `WEFT_KUBE_BIN` if set, else from `scripts/kube/build-binaries.sh`
//! (cached; a fresh machine builds them once). Everything lives in the lab's scratch directory:
//! the logs (`etcd.log`, `kube-apiserver.log`) are printed with the lab's on failure. The
//! processes are killed on drop, also when a test panics, and the lab removes the namespace.
//!
//! A test file includes it next to the namespace lab: `mod kubelab; use weft_testkit::netlab;`.

#![allow(dead_code)] // each test file uses its own part of the harness

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::netlab::{Lab, Node, in_netns};

/// The API server's address on the lab's underlay (the nodes are .11 and up).
pub const ADDRESS: &str = "198.51.100.2";
pub const PORT: u16 = 6443;
/// The router's identity: the user name Kubernetes gives the ServiceAccount's tokens, which is
/// what the RBAC bindings to that ServiceAccount match.
pub const ROUTER_NAMESPACE: &str = "kube-system";
pub const ROUTER_ACCOUNT: &str = "weave-net";
pub const ROUTER_USER: &str = "system:serviceaccount:kube-system:weave-net";
const ROUTER_GROUPS: &str = "system:serviceaccounts,system:serviceaccounts:kube-system";

/// Generous: CI is a 2-core machine that may be compiling beside the test.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bounds every request the harness makes.
const REQUEST_TIMEOUT_SECS: &str = "20";

/// The directory holding kube-apiserver (and the other Kubernetes binaries).
pub fn kube_bin() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("WEFT_KUBE_BIN").filter(|dir| !dir.is_empty()) {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube/build-binaries.sh");
        let output = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(output.status.success(), "{} failed", script.display());
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// etcd and kube-apiserver in namespace `weft-<tag>-apiserver-<pid>`. Declare it after the
/// `Lab`, so that it is dropped first: its processes die before the lab prints the logs.
pub struct KubeApi {
    ns: String,
    /// `<lab dir>/kube`: PKI, tokens, kubeconfigs, etcd's data.
    dir: PathBuf,
    /// The lab's scratch directory, where the logs go.
    log_dir: PathBuf,
    admin_token: String,
    router_token: String,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

impl KubeApi {
    /// Puts the API server's namespace on the lab's underlay and starts etcd and kube-apiserver,
    /// returning once the API server is ready (and the `kube-system` namespace exists).
    pub fn new(lab: &mut Lab) -> Self {
        let ns = lab.host("apiserver", ADDRESS);
        let dir = lab.dir().join("kube");
        std::fs::create_dir_all(dir.join("pki")).unwrap();
        // Made before any process starts, so that a panic from here on reaps what started.
        let mut api = Self {
            ns,
            dir,
            log_dir: lab.dir().to_path_buf(),
            admin_token: random_token(),
            router_token: random_token(),
            etcd: None,
            apiserver: None,
        };
        api.make_pki();
        api.write_kubeconfigs();
        api.start_etcd();
        api.start();
        api
    }

    /// The API server's network namespace.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The URL the nodes reach the API server at.
    pub fn server(&self) -> String {
        format!("https://{ADDRESS}:{PORT}")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn router_token(&self) -> &str {
        &self.router_token
    }

    /// A kubeconfig for `admin` (group system:masters).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A kubeconfig for the router's identity, [`ROUTER_USER`]: it may do nothing until
    /// [`KubeApi::grant_router_rbac`].
    pub fn router_kubeconfig(&self) -> PathBuf {
        self.dir.join("router.kubeconfig")
    }

    /// Starts a router on `node` that finds its peers through this API server's Nodes, as in a
    /// cluster: peer name `name`, nickname and Node name `node_name`, its log under `log`, and
    /// `extra` arguments after the common ones.
    pub fn start_router(
        &self,
        lab: &mut Lab,
        node: &Node,
        name: &str,
        node_name: &str,
        log: &str,
        extra: &[&str],
    ) {
        let kubeconfig = self.router_kubeconfig();
        let mut args = vec![
            "--name",
            name,
            "--nickname",
            node_name,
            "--host",
            &node.ip,
            "--kube-peers",
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8 path"),
            "--node-name",
            node_name,
        ];
        args.extend(extra);
        lab.spawn_router(&node.ns, log, &args);
    }

    /// Starts kube-apiserver (again, after [`KubeApi::stop`]) and waits until it is ready. The
    /// cluster's state survives in etcd.
    pub fn start(&mut self) {
        assert!(
            self.apiserver.is_none(),
            "kube-apiserver is running already"
        );
        let started = Instant::now();
        let args = self.apiserver_args();
        self.apiserver =
            Some(self.spawn("kube-apiserver", &kube_bin().join("kube-apiserver"), &args));
        self.wait_serving("kube-apiserver", READY_TIMEOUT, |api| {
            api.request("GET", "/readyz", None).0 == 200
                && api.request("GET", "/api/v1/namespaces/kube-system", None).0 == 200
        });
        eprintln!(
            "kubelab: kube-apiserver in {} ready after {:.1} s",
            self.ns,
            started.elapsed().as_secs_f64()
        );
    }

    /// Stops kube-apiserver (SIGKILL, as an outage would), leaving etcd and its state.
    pub fn stop(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            let _ = apiserver.kill();
            let _ = apiserver.wait();
        }
    }

    /// Gives the router's identity what the DaemonSet's manifest gives it, no more: applies
    /// `deploy/weave-net.yaml` itself (with kubectl, as admin), so the tests prove that the
    /// RBAC operators install is what the router and weave-npc need. The manifest's DaemonSet
    /// is created too, but no controller runs here to make pods of it.
    pub fn grant_router_rbac(&self) {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/weave-net.yaml");
        let kubectl = kube_bin().join("kubectl");
        let output = in_netns(
            &self.ns,
            &kubectl.display().to_string(),
            &[
                "--kubeconfig",
                &self.admin_kubeconfig().display().to_string(),
                "apply",
                "-f",
                &manifest.display().to_string(),
            ],
        );
        assert!(
            output.status.success(),
            "kubectl apply -f deploy/weave-net.yaml: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates Node `name` with an InternalIP, as a kubelet would register it.
    pub fn create_node(&self, name: &str, internal_ip: &str) {
        self.create_node_with_addresses(name, &[("InternalIP", internal_ip)]);
    }

    /// Creates Node `name` with the label `kubernetes.io/hostname` and `addresses` as
    /// (type, address) pairs in its status.
    pub fn create_node_with_addresses(&self, name: &str, addresses: &[(&str, &str)]) {
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        });
        self.expect_success("POST", "/api/v1/nodes", Some(&node));
        // The API server drops the status of an object it creates: the addresses go in after.
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(kind, address)| json!({"type": kind, "address": address}))
            .collect();
        let status = json!({"status": {"addresses": addresses}});
        self.expect_success(
            "PATCH",
            &format!("/api/v1/nodes/{name}/status"),
            Some(&status),
        );
    }

    pub fn delete_node(&self, name: &str) {
        self.expect_success("DELETE", &format!("/api/v1/nodes/{name}"), None);
    }

    /// Node `name`, or None if there is none.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.get_optional(&format!("/api/v1/nodes/{name}"))
    }

    /// ConfigMap `namespace/name`, or None if there is none.
    pub fn configmap(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get_optional(&format!("/api/v1/namespaces/{namespace}/configmaps/{name}"))
    }

    /// One request as admin, from the API server's own namespace: the HTTP status (0 when the
    /// API server cannot be reached) and the response body as JSON (a JSON string if it is not
    /// JSON, null if empty). A PATCH body is a JSON merge patch.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("https://127.0.0.1:{PORT}{path}");
        self.curl(&self.ns, &self.admin_token, method, &url, body)
    }

    /// One request from namespace `netns` (a node's) with `token`, over the underlay as a router
    /// makes it; the result as for [`KubeApi::request`].
    pub fn request_from(
        &self,
        netns: &str,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.server());
        self.curl(netns, token, method, &url, body)
    }

    fn curl(
        &self,
        netns: &str,
        token: &str,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let ca = self.ca_cert();
        let authorization = format!("Authorization: Bearer {token}");
        let mut args = vec![
            "--silent",
            "--max-time",
            REQUEST_TIMEOUT_SECS,
            "--cacert",
            ca.to_str().unwrap(),
            "--header",
            &authorization,
            "--request",
            method,
            // The status on a line of its own after the body: "000" when nothing answered.
            "--write-out",
            "\n%{http_code}",
        ];
        let body = body.map(Value::to_string);
        if let Some(body) = &body {
            let content_type = match method {
                "PATCH" => "Content-Type: application/merge-patch+json",
                _ => "Content-Type: application/json",
            };
            args.extend(["--header", content_type, "--data-binary", body]);
        }
        args.push(url);
        let output = in_netns(netns, "curl", &args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let status = code.trim().parse().unwrap_or(0);
        let value = match text.trim() {
            "" => Value::Null,
            text => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        };
        (status, value)
    }

    fn expect_success(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, response) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {response}"
        );
        response
    }

    fn get_optional(&self, path: &str) -> Option<Value> {
        match self.request("GET", path, None) {
            (200, object) => Some(object),
            (404, _) => None,
            (status, response) => panic!("GET {path}: {status} {response}"),
        }
    }

    fn make_pki(&self) {
        let pki = self.dir.join("pki");
        openssl(&pki)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "3650"])
            .args(["-subj", "/CN=weft-lab-ca"])
            .run();
        openssl(&pki)
            .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "apiserver.key", "-out", "apiserver.csr"])
            .args(["-subj", "/CN=kube-apiserver"])
            .run();
        // The names a client may use: the underlay address (nodes), loopback (this harness) and
        // the `kubernetes` Service's (pods).
        let extensions = format!(
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:{ADDRESS},IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:localhost\n"
        );
        std::fs::write(pki.join("apiserver.ext"), extensions).unwrap();
        openssl(&pki)
            .args(["x509", "-req", "-in", "apiserver.csr", "-days", "365"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "apiserver.ext", "-out", "apiserver.crt"])
            .run();
        // The key pair that signs and verifies ServiceAccount tokens.
        openssl(&pki)
            .args(["genpkey", "-algorithm", "RSA", "-out", "sa.key"])
            .args(["-pkeyopt", "rsa_keygen_bits:2048"])
            .run();
        openssl(&pki)
            .args(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
            .run();
        let tokens = format!(
            "{},admin,admin,\"system:masters\"\n{},{ROUTER_USER},{ROUTER_USER},\"{ROUTER_GROUPS}\"\n",
            self.admin_token, self.router_token
        );
        std::fs::write(pki.join("tokens.csv"), tokens).unwrap();
    }

    fn write_kubeconfigs(&self) {
        let ca_data = openssl(&self.dir.join("pki"))
            .args(["base64", "-A", "-in", "ca.crt"])
            .run();
        let server = self.server();
        for (path, user, token) in [
            (self.admin_kubeconfig(), "admin", &self.admin_token),
            (self.router_kubeconfig(), "weave-net", &self.router_token),
        ] {
            let kubeconfig = format!(
                "apiVersion: v1\n\
                 kind: Config\n\
                 clusters:\n\
                 - name: weft-lab\n\
                 \x20 cluster:\n\
                 \x20   server: {server}\n\
                 \x20   certificate-authority-data: {ca_data}\n\
                 users:\n\
                 - name: {user}\n\
                 \x20 user:\n\
                 \x20   token: {token}\n\
                 contexts:\n\
                 - name: {user}@weft-lab\n\
                 \x20 context:\n\
                 \x20   cluster: weft-lab\n\
                 \x20   user: {user}\n\
                 current-context: {user}@weft-lab\n",
                ca_data = ca_data.trim()
            );
            std::fs::write(path, kubeconfig).unwrap();
        }
    }

    fn start_etcd(&mut self) {
        let data = self.dir.join("etcd");
        let args = [
            "--name=weft-lab".to_string(),
            format!("--data-dir={}", data.display()),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=weft-lab=http://127.0.0.1:2380".into(),
        ];
        self.etcd = Some(self.spawn("etcd", Path::new("etcd"), &args));
        // kube-apiserver gives up on an etcd that does not answer for long: start it after.
        self.wait_serving("etcd", READY_TIMEOUT, |api| {
            let output = in_netns(
                &api.ns,
                "curl",
                &[
                    "--silent",
                    "--max-time",
                    "5",
                    "http://127.0.0.1:2379/health",
                ],
            );
            String::from_utf8_lossy(&output.stdout).contains("\"health\":\"true\"")
        });
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = self.dir.join("pki");
        let pki = |file: &str| pki.join(file).display().to_string();
        vec![
            "--etcd-servers=http://127.0.0.1:2379".into(),
            "--bind-address=0.0.0.0".into(),
            format!("--advertise-address={ADDRESS}"),
            format!("--secure-port={PORT}"),
            "--insecure-port=0".into(),
            format!("--tls-cert-file={}", pki("apiserver.crt")),
            format!("--tls-private-key-file={}", pki("apiserver.key")),
            format!("--client-ca-file={}", pki("ca.crt")),
            format!("--token-auth-file={}", pki("tokens.csv")),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            // The DaemonSet of deploy/weave-net.yaml (applied for its RBAC) is privileged.
            "--allow-privileged=true".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki("sa.pub")),
            format!("--service-account-signing-key-file={}", pki("sa.key")),
        ]
    }

    /// Starts `program ARGS` in the API server's namespace, appending its output to
    /// `<name>.log` in the lab's directory (a restart keeps the earlier run's log).
    fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Child {
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    /// Waits until `ready`, failing the test at once if etcd or kube-apiserver died.
    fn wait_serving(&mut self, what: &str, timeout: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return;
            }
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    *child = None;
                    panic!("{name} exited ({status}) while waiting for {what}: see {name}.log");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what} not ready in {} s",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}

/// 128 random bits in hex: a bearer token no other lab shares.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `openssl`, run in `dir` so that file names stay short; `.args(..)` then `.run()`.
fn openssl(dir: &Path) -> OpenSsl {
    let mut command = Command::new("openssl");
    command.current_dir(dir);
    OpenSsl(command)
}

struct OpenSsl(Command);

impl OpenSsl {
    fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.args(args);
        self
    }

    /// Runs it, failing the test with openssl's output if it fails; returns its stdout.
    fn run(mut self) -> String {
        let output = self.0.output().expect("run openssl (install openssl)");
        assert!(output.status.success(), "{:?}: {output:?}", self.0);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
