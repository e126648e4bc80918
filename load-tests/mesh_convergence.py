#!/usr/bin/env python3
"""Mesh convergence load test for the Weft control plane.

Starts many `weft router --no-dataplane` processes on loopback addresses (router i on
127.0.0.(10+i)), waits until every router has a unicast route to every other one, and reports
how long that took, how many links each router holds against its --conn-limit, how many
connections were refused for the limit, the routers' peak RSS and the hop counts of the routes.

While the mesh forms, the test reads the topology from ONE router's /report (every peer's record
with its links, the graph every router computes its routes from by breadth-first search), so
that its figures measure the mesh and not the harness: polling every router's /report took 33 s
a round at 250 routers. From that view it times convergence (every router present, the links
that both ends list as established connect them all), follows the link changes the connection
makers' rebalancing makes until none has come for --quiet seconds, and computes the diameter and
mean hops. Only then does it read every router's /report once, to check each router's own routes
(following next hops) and its connection limit.

Two modes:
  mesh (default)  N routers (--routers, default 40), each given --seed-peers initial peers.
  hub             one hub (127.0.0.11) and N others (--routers, default 31) given only the hub;
                  checks that the hub holds its limit of links and everyone still reaches it.

Python 3 standard library only. Everything it starts is stopped (SIGTERM, then SIGKILL) and its
temporary directory removed whatever happens. See load-tests/README.md.
"""

import argparse
import concurrent.futures
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

EXIT_OK = 0
EXIT_FAILED = 1  # not converged, a router over its limit, the hub unreachable...
EXIT_SETUP = 2  # bad arguments, binary missing, addresses in use, a router died at start
EXIT_INTERRUPTED = 130

HTTP_TIMEOUT = 3.0  # seconds, per request
READY_TIMEOUT = 30.0  # seconds a router has to answer /status before its dependents start
# Seconds the observer's /report may take: one request a round, and a debug build of 100 routers
# on a loaded 2-core machine took 10 s to answer it.
OBSERVER_TIMEOUT = 30.0
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
PR_SET_PDEATHSIG = 1


class SetupError(Exception):
    """The test could not be run (exit 2)."""


class Terminated(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived; unwinds to the cleanup in `main`."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mac(value):
    """A 48-bit peer name, MAC-style, from an integer."""
    return ":".join(f"{(value >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def norm_name(value):
    """Peer names appear in /report as integers (the serde form); accept strings too."""
    if isinstance(value, int):
        return mac(value)
    return str(value).lower()


def fmt_s(seconds):
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def mib(kib):
    return kib / 1024.0


def summary(values):
    """min/median/max (and mean) of a non-empty list, or None."""
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# --------------------------------------------------------------------------------------------
# Routers


class Router:
    def __init__(self, index, ip, args, root, conn_limit, nickname, peers):
        self.index = index
        self.ip = ip
        self.name = mac(index)
        self.nickname = nickname
        self.conn_limit = conn_limit
        self.peers = peers  # initial peers, as "ip:port"
        self.port = args.port
        self.http_addr = f"{ip}:{args.http_port}"
        self.metrics_addr = f"{ip}:{args.metrics_port}"
        self.db_dir = os.path.join(root, "db", f"r{index}")
        self.log_path = os.path.join(root, "logs", f"r{index}-{nickname}.log")
        self.proc = None
        self.log_file = None
        self.started_at = None
        # Observations
        self.report = None  # last good /report
        self.report_at = None
        self.complete_since = None  # since when its routes reach every other router
        self.peak_links = 0  # established + pending, the links holding a permit
        self.peak_established = 0
        self.errors = 0  # failed /report fetches after it was ready
        self.ready = False
        self.rss = None  # {"VmHWM": kB, "VmRSS": kB}
        self.cpu_s = None  # user + system CPU seconds since the start
        self.metrics = None

    @property
    def mesh_addr(self):
        return f"{self.ip}:{self.port}"

    def command(self, binary, log_level):
        return [
            binary, "router", "--no-dataplane",
            "--name", self.name,
            "--nickname", self.nickname,
            "--host", self.ip,
            "--port", str(self.port),
            "--http-addr", self.http_addr,
            "--metrics-addr", self.metrics_addr,
            "--db-prefix", os.path.join(self.db_dir, "weave-net"),
            "--conn-limit", str(self.conn_limit),
            "--log-level", log_level,
            *self.peers,
        ]

    def start(self, binary, log_level):
        os.makedirs(self.db_dir, exist_ok=True)
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command(binary, log_level),
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            # Own session: a terminal Ctrl-C reaches only this script, which then stops the
            # routers in order; PDEATHSIG stops them should this script be SIGKILLed.
            start_new_session=True,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        self.started_at = time.monotonic()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def read_memory(self):
        if not self.alive():
            return
        values = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("VmHWM", "VmRSS"):
                        values[key] = int(rest.split()[0])  # kB
        except (OSError, ValueError, IndexError):
            return
        self.rss = values
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                # Fields after the command (which may hold spaces) are split from its ")".
                fields = f.read().rpartition(")")[2].split()
            # utime and stime are fields 14 and 15 of proc(5), 12 and 13 after the ")".
            self.cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass


_LIBC = None


def _die_with_parent():
    """In the child, before exec: SIGKILL it when the script dies."""
    try:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort, never block the start
        pass


def stop_all(routers):
    """SIGTERM every router still running, SIGKILL those left after STOP_GRACE, reap all."""
    running = [r for r in routers if r.alive()]
    for r in running:
        try:
            r.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    while running and time.monotonic() < deadline:
        running = [r for r in running if r.alive()]
        if running:
            time.sleep(0.05)
    for r in running:
        try:
            r.proc.kill()
        except ProcessLookupError:
            pass
    for r in routers:
        if r.proc is not None:
            try:
                r.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"warning: router {r.nickname} (pid {r.proc.pid}) did not exit after SIGKILL")
        if r.log_file is not None:
            r.log_file.close()
            r.log_file = None
    return len(running)  # how many needed SIGKILL


# --------------------------------------------------------------------------------------------
# HTTP


def http_get(url, timeout=HTTP_TIMEOUT):
    """(status, body) for a GET; status None on a connection error."""
    req = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None, b""


def fetch_report(router, timeout=HTTP_TIMEOUT):
    status, body = http_get(f"http://{router.http_addr}/report", timeout=timeout)
    if status != 200:
        return router, None, time.monotonic()
    try:
        return router, json.loads(body), time.monotonic()
    except ValueError:
        return router, None, time.monotonic()


def parse_metrics(text):
    """The few series we cross-check, from Prometheus text."""
    out = {"refused_for_limit": 0.0, "connections": {}}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        if series.startswith("weft_connections_refused_total") and 'reason="connection_limit"' in series:
            out["refused_for_limit"] = number
        elif series.startswith("weave_connections{"):
            for label in series[len("weave_connections{"):-1].split(","):
                key, _, val = label.partition("=")
                if key == "state":
                    out["connections"][val.strip('"')] = number
    return out


def wait_ready(router, deadline):
    """Waits for /status to answer 200 (the router is ready)."""
    while time.monotonic() < deadline:
        if not router.alive():
            raise SetupError(
                f"router {router.nickname} ({router.ip}) exited with code {router.proc.returncode} "
                f"during start-up; its log:\n{router.log_tail()}"
            )
        status, _ = http_get(f"http://{router.http_addr}/status", timeout=1.0)
        if status == 200:
            router.ready = True
            return
        time.sleep(0.05)
    raise SetupError(f"router {router.nickname} ({router.ip}) not ready after {READY_TIMEOUT:.0f} s; "
                     f"its log:\n{router.log_tail()}")


# --------------------------------------------------------------------------------------------
# Set-up


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def target_dir():
    configured = os.environ.get("CARGO_TARGET_DIR")
    if configured:
        return configured if os.path.isabs(configured) else os.path.join(repo_root(), configured)
    return os.path.join(repo_root(), "target")


def find_binary(args):
    if args.build:
        log("building: cargo build --release")
        result = subprocess.run(["cargo", "build", "--release"], cwd=repo_root())
        if result.returncode != 0:
            raise SetupError("cargo build --release failed")
        path = os.path.join(target_dir(), "release", "weft")
    elif args.weft:
        path = os.path.abspath(args.weft)
    else:
        release = os.path.join(target_dir(), "release", "weft")
        debug = os.path.join(target_dir(), "debug", "weft")
        path = release if os.path.exists(release) else debug
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SetupError(f"no weft binary at {path} (build it with `cargo build`, or give --weft PATH / --build)")
    return path


def build_kind(path):
    parts = os.path.normpath(path).split(os.sep)
    if "release" in parts:
        return "release"
    if "debug" in parts:
        return "debug"
    return "unknown"


def check_free(routers, args):
    """Fails unless every address/port a router will bind is free (and is a loopback address)."""
    busy = []
    for r in routers:
        if not r.ip.startswith("127."):
            raise SetupError(f"{r.ip} is not a loopback address; this test only uses 127.0.0.0/8")
        for port, what in ((args.port, "mesh"), (args.http_port, "HTTP"), (args.metrics_port, "metrics")):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # As the router does (Rust std and tokio set SO_REUSEADDR): TIME_WAIT left by an
            # earlier run does not count as busy, a listener does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((r.ip, port))
            except OSError as err:
                busy.append(f"{r.ip}:{port} ({what}, for {r.nickname}): {err.strerror}")
            finally:
                sock.close()
    if busy:
        raise SetupError(
            "addresses already in use (another test running? use --ip-prefix/--ip-offset or other ports):\n  "
            + "\n  ".join(busy)
        )


def plan(args, root):
    """The routers to start, in order."""
    routers = []
    total = args.routers + (1 if args.mode == "hub" else 0)
    last_octet = args.ip_offset + total
    if args.ip_offset < 0 or last_octet > 254:
        raise SetupError(f"{total} routers from {args.ip_prefix}.{args.ip_offset + 1} do not fit in one /24")

    def ip(i):
        return f"{args.ip_prefix}.{args.ip_offset + i}"

    for i in range(1, total + 1):
        if args.mode == "hub":
            if i == 1:
                peers, limit, nick = [], args.hub_conn_limit, "hub"
            else:
                peers, limit, nick = [f"{ip(1)}:{args.port}"], args.conn_limit, f"n{i}"
        else:
            limit, nick = args.conn_limit, f"n{i}"
            if args.seed_mode == "first":
                seeds = range(1, min(args.seed_peers, i - 1) + 1)
            elif args.seed_mode == "nodes":
                seeds = [j for j in range(1, total + 1) if j != i]
            else:  # previous
                seeds = range(max(1, i - args.seed_peers), i)
            peers = [f"{ip(j)}:{args.port}" for j in seeds]
        routers.append(Router(i, ip(i), args, root, limit, nick, peers))
    return routers


# --------------------------------------------------------------------------------------------
# Analysis


def links_of(report):
    established = pending = 0
    for conn in report.get("Connections") or []:
        state = conn.get("State")
        if state == "established":
            established += 1
        elif state == "pending":
            pending += 1
    return established, pending


def routes_of(report):
    return {norm_name(r["Dest"]): norm_name(r["Via"]) for r in report.get("UnicastRoutes") or []}


def hop_count(routes_by_name, src, dest, limit):
    """Hops from src to dest following each router's own next hop; None if broken or looping."""
    cur, hops = src, 0
    while cur != dest:
        table = routes_by_name.get(cur)
        if table is None:
            return None
        via = table.get(dest)
        if via is None:
            return None
        cur, hops = via, hops + 1
        if hops > limit:
            return None
    return hops


def components(routers):
    """Connected components of the established-link graph (as each router reports its links)."""
    adj = {r.name: set() for r in routers}
    for r in routers:
        for conn in (r.report or {}).get("Connections") or []:
            if conn.get("State") == "established" and conn.get("Peer") is not None:
                peer = norm_name(conn["Peer"])
                if peer in adj:
                    adj[r.name].add(peer)
                    adj[peer].add(r.name)
    nick = {r.name: r.nickname for r in routers}
    seen, comps = set(), []
    for r in routers:
        if r.name in seen:
            continue
        comp, stack = set(), [r.name]
        while stack:
            node = stack.pop()
            if node not in comp:
                comp.add(node)
                stack.extend(adj[node] - comp)
        seen |= comp
        comps.append([nick[n] for n in sorted(comp)])
    comps.sort(key=len, reverse=True)
    return comps


def analyse_hops(routers):
    routes_by_name = {r.name: routes_of(r.report) for r in routers if r.report}
    names = [r.name for r in routers]
    histogram, broken, per_router_max = {}, [], {}
    for src in names:
        worst = 0
        for dest in names:
            if dest == src:
                continue
            hops = hop_count(routes_by_name, src, dest, len(names))
            if hops is None:
                broken.append((src, dest))
                continue
            histogram[hops] = histogram.get(hops, 0) + 1
            worst = max(worst, hops)
        per_router_max[src] = worst
    return {
        "max": max(histogram) if histogram else None,
        "mean": (sum(h * n for h, n in histogram.items()) / sum(histogram.values())) if histogram else None,
        "histogram": {str(h): histogram[h] for h in sorted(histogram)},
        "broken_paths": len(broken),
        "broken_examples": [f"{a}->{b}" for a, b in broken[:5]],
        "per_router_max": per_router_max,
    }, routes_by_name


# --------------------------------------------------------------------------------------------
# One router's view of the whole mesh


def view_links(report):
    """name -> the peers its record lists, as (established, all) sets, from one /report."""
    links = {}
    for peer in report.get("Peers") or []:
        conns = peer.get("Connections") or []
        links[norm_name(peer["Name"])] = (
            {norm_name(c["Name"]) for c in conns if c.get("Established")},
            {norm_name(c["Name"]) for c in conns},
        )
    return links


def symmetric_edges(links):
    """The links both ends list as established: what routes are computed over."""
    edges = set()
    for a, (established, _) in links.items():
        for b in established:
            if a < b and a in links.get(b, (set(), set()))[0]:
                edges.add((a, b))
    return frozenset(edges)


def adjacency(names, edges):
    adj = {n: set() for n in names}
    for a, b in edges:
        if a in adj and b in adj:
            adj[a].add(b)
            adj[b].add(a)
    return adj


def bfs(adj, src):
    dist = {src: 0}
    frontier = [src]
    while frontier:
        nxt = []
        for node in frontier:
            for peer in adj[node]:
                if peer not in dist:
                    dist[peer] = dist[node] + 1
                    nxt.append(peer)
        frontier = nxt
    return dist


def graph_hops(names, edges):
    """Diameter, mean hops and histogram of shortest paths over `edges` (None when partitioned);
    routes are breadth-first, so these are the routes' hop counts once every view agrees."""
    adj = adjacency(names, edges)
    histogram, unreachable = {}, 0
    for src in names:
        dist = bfs(adj, src)
        unreachable += len(names) - len(dist)
        for dest, hops in dist.items():
            if dest != src:
                histogram[hops] = histogram.get(hops, 0) + 1
    if not histogram or unreachable:
        return {"max": None, "mean": None, "histogram": {}, "unreachable_pairs": unreachable}
    total = sum(histogram.values())
    return {
        "max": max(histogram),
        "mean": sum(h * n for h, n in histogram.items()) / total,
        "histogram": {str(h): histogram[h] for h in sorted(histogram)},
        "unreachable_pairs": 0,
    }


# --------------------------------------------------------------------------------------------
# The run


def poll_round(pool, routers, names):
    """Fetches every ready router's report; updates the per-router observations."""
    others = {r.name: names - {r.name} for r in routers}
    for router, report, at in pool.map(fetch_report, routers):
        if report is None:
            if router.ready:
                router.errors += 1  # a missed poll leaves its last observation standing
            continue
        router.ready = True
        router.report, router.report_at = report, at
        established, pending = links_of(report)
        router.peak_links = max(router.peak_links, established + pending)
        router.peak_established = max(router.peak_established, established)
        complete = others[router.name] <= set(routes_of(report))
        if complete:
            if router.complete_since is None:
                router.complete_since = at
        else:
            router.complete_since = None


def check_dead(routers):
    dead = [r for r in routers if r.proc is not None and r.proc.poll() is not None]
    if dead:
        details = "\n".join(
            f"--- {r.nickname} ({r.ip}) exited with code {r.proc.returncode}; log tail:\n{r.log_tail()}"
            for r in dead[:3]
        )
        raise RuntimeError(f"{len(dead)} router(s) exited during the test:\n{details}")


def run_test(args, routers, binary, log_level):
    timings = {}
    check_free(routers, args)
    t_first = time.monotonic()
    for r in routers:
        # Never start a router before its initial peers answer: a refused first dial would only
        # measure the retry back-off. Except with every node as a peer: a DaemonSet's routers
        # start in no order, each given the whole Node list.
        for peer_addr in ([] if args.seed_mode == "nodes" else r.peers):
            peer = next(p for p in routers if p.mesh_addr == peer_addr)
            if not peer.ready:
                wait_ready(peer, time.monotonic() + READY_TIMEOUT)
        r.start(binary, log_level)
        if args.start_interval > 0:
            time.sleep(args.start_interval)
    t_last = routers[-1].started_at
    timings["startup_s"] = t_last - t_first
    log(f"started {len(routers)} routers in {timings['startup_s']:.2f} s; waiting for convergence "
        f"(timeout {args.timeout:.0f} s)")

    names = {r.name for r in routers}
    deadline = t_first + args.timeout
    observer = routers[args.observer - 1]
    converged_at = None
    converged_hops = None
    last_edges = frozenset()
    last_change_at = None
    changes = []  # (time, links made or dropped) per change seen in the observer's view
    rounds, round_times = 0, []
    last_progress = time.monotonic()
    peak_listed = {}  # name -> most connections its record listed (pending ones included)
    while True:
        start = time.monotonic()
        check_dead(routers)
        _, report, at = fetch_report(observer, OBSERVER_TIMEOUT)
        end = time.monotonic()
        rounds += 1
        round_times.append(end - start)
        if report is not None:
            links = view_links(report)
            for name, (_, listed) in links.items():
                peak_listed[name] = max(peak_listed.get(name, 0), len(listed))
            edges = symmetric_edges(links)
            if edges != last_edges:
                changes.append((at, len(edges ^ last_edges)))
                last_edges, last_change_at = edges, at
            complete = names <= set(links) and len(bfs(adjacency(names, edges), observer.name)) == len(names)
            if complete and converged_at is None:
                converged_at = at
                converged_hops = graph_hops(sorted(names), edges)
                log(f"converged {converged_at - t_last:.2f} s after the last start (hops max "
                    f"{converged_hops['max']}, mean {converged_hops['mean']:.2f}); waiting for the links "
                    f"to stay unchanged for {args.quiet:.0f} s")
            elif not complete and converged_at is not None:
                log("warning: the mesh came apart after convergence")
                converged_at = None
            quiet = last_change_at is not None and end - last_change_at >= args.quiet
            if converged_at is not None and quiet and end - converged_at >= args.settle:
                break
        if end >= deadline:
            log(f"stopping after {args.timeout:.0f} s " + ("(converged, links still changing)"
                                                        if converged_at is not None else "(not converged)"))
            break
        if end - last_progress >= 5.0:
            last_progress = end
            recent = sum(n for t, n in changes if t >= end - 10.0)
            known = sum(1 for n in names if report is not None and n in view_links(report))
            log(f"  t={end - t_first:6.1f} s  observer knows {known}/{len(names)} routers  "
                f"links {len(last_edges)}  changed in the last 10 s: {recent}")
        time.sleep(max(0.0, start + args.poll_interval - time.monotonic()))

    # The settled mesh: each router's own report, once.
    sweep_start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(routers))) as pool:
        poll_round(pool, routers, names)
    timings["final_sweep_s"] = time.monotonic() - sweep_start
    for r in routers:
        r.peak_links = max(r.peak_links, peak_listed.get(r.name, 0))
    after_convergence = [(t, n) for t, n in changes if converged_at is not None and t > converged_at]
    windows = {}
    for t, n in after_convergence:
        key = int((t - converged_at) // 10)
        windows[key] = windows.get(key, 0) + n
    timings.update({
        "converged_hops": converged_hops,
        "settled_hops": graph_hops(sorted(names), last_edges),
        "last_change_s": None if last_change_at is None else last_change_at - t_last,
        "changes_after_convergence": sum(n for _, n in after_convergence),
        "changes_per_10s_after_convergence": [windows.get(k, 0) for k in range(max(windows, default=-1) + 1)],
        "quiet_at_end": last_change_at is not None and time.monotonic() - last_change_at >= args.quiet,
    })
    check_dead(routers)

    # The end state: memory before anything stops, metrics for a cross-check.
    for r in routers:
        r.read_memory()
    for r in routers:
        status, body = http_get(f"http://{r.metrics_addr}/metrics")
        if status == 200:
            r.metrics = parse_metrics(body.decode("utf-8", "replace"))

    timings.update({
        "converged": converged_at is not None,
        "since_last_start_s": None if converged_at is None else converged_at - t_last,
        "since_first_start_s": None if converged_at is None else converged_at - t_first,
        "observer": observer.nickname,
        "run_s": time.monotonic() - t_first,
        "poll_rounds": rounds,
        "poll_round_mean_s": statistics.fmean(round_times) if round_times else None,
        "still_converged_at_end": all(r.complete_since is not None for r in routers),
    })
    return timings


def evaluate(args, routers, timings, binary):
    hops, routes_by_name = analyse_hops(routers)
    per_router = []
    for r in routers:
        rep = r.report or {}
        established, pending = links_of(rep) if rep else (None, None)
        per_router.append({
            "index": r.index,
            "name": r.name,
            "nickname": r.nickname,
            "address": r.ip,
            "conn_limit": r.conn_limit,
            "initial_peers": r.peers,
            "established": established,
            "pending": pending,
            "peak_links": r.peak_links,
            "peak_established": r.peak_established,
            "routes": len(rep.get("UnicastRoutes") or []),
            "peers_known": len(rep.get("Peers") or []),
            "refused_for_limit": rep.get("RefusedForLimitCount"),
            "terminations": rep.get("TerminationCount"),
            "max_hops": hops["per_router_max"].get(r.name),
            "vm_hwm_kib": (r.rss or {}).get("VmHWM"),
            "cpu_s": r.cpu_s,
            "vm_rss_kib": (r.rss or {}).get("VmRSS"),
            "metrics_refused_for_limit": None if r.metrics is None else r.metrics["refused_for_limit"],
            "metrics_established": None if r.metrics is None else r.metrics["connections"].get("established"),
            "report_errors": r.errors,
        })

    established = [p["established"] for p in per_router if p["established"] is not None]
    over_limit = [p["nickname"] for p in per_router
                  if p["conn_limit"] and (p["peak_links"] > p["conn_limit"] or p["peak_established"] > p["conn_limit"])]
    refused = [p["refused_for_limit"] or 0 for p in per_router]
    metrics_refused = [p["metrics_refused_for_limit"] for p in per_router]
    hwm = [p["vm_hwm_kib"] for p in per_router if p["vm_hwm_kib"] is not None]
    cpu = [p["cpu_s"] for p in per_router if p["cpu_s"] is not None]

    result = {
        "mode": args.mode,
        "routers": len(routers),
        "conn_limit": args.conn_limit,
        "binary": binary,
        "build": build_kind(binary),
        "timeout_s": args.timeout,
        "convergence": timings,
        "established": summary(established),
        "over_limit": over_limit,
        "isolated": [p["nickname"] for p in per_router if not p["established"]],
        "components": components(routers),
        "refused_for_limit_total": sum(refused),
        "refused_for_limit_routers": sum(1 for n in refused if n),
        "refused_for_limit_metrics_total": None if None in metrics_refused else int(sum(metrics_refused)),
        "terminations_total": sum(p["terminations"] or 0 for p in per_router),
        "vm_hwm_kib": None if not hwm else {**summary(hwm), "total": sum(hwm)},
        "cpu_s": None if not cpu else {**summary(cpu), "total": sum(cpu)},
        "hops": {k: v for k, v in hops.items() if k != "per_router_max"},
        "per_router": per_router,
    }
    if args.mode == "mesh":
        result["seed_peers"] = args.seed_peers
        result["seed_mode"] = args.seed_mode

    failures = []
    if not timings["converged"]:
        failures.append(f"not converged within {args.timeout:.0f} s")
    elif not timings["still_converged_at_end"]:
        failures.append("some router's own routes do not reach every other router")
    elif not timings["quiet_at_end"]:
        failures.append(f"links still changing at the end (no {args.quiet:.0f} s without a change)")
    if over_limit:
        failures.append(f"over the connection limit: {', '.join(over_limit)}")

    if args.mode == "hub":
        hub = routers[0]
        hub_rep = hub.report or {}
        hub_est = links_of(hub_rep)[0] if hub_rep else None
        reach = {"direct": [], "indirect": [], "unreachable": []}
        indirect_hops = []
        for r in routers[1:]:
            via = routes_by_name.get(r.name, {}).get(hub.name)
            if via is None:
                reach["unreachable"].append(r.nickname)
            elif via == hub.name:
                reach["direct"].append(r.nickname)
            else:
                reach["indirect"].append(r.nickname)
                indirect_hops.append(hop_count(routes_by_name, r.name, hub.name, len(routers)))
        result["hub"] = {
            "name": hub.name,
            "address": hub.ip,
            "conn_limit": hub.conn_limit,
            "established": hub_est,
            "peak_links": hub.peak_links,
            "at_limit": hub_est == hub.conn_limit,
            "refused_for_limit": hub_rep.get("RefusedForLimitCount"),
            "others": len(routers) - 1,
            "reach_directly": len(reach["direct"]),
            "reach_via_another_peer": len(reach["indirect"]),
            "via_another_peer": reach["indirect"],
            "via_another_peer_hops": [h for h in indirect_hops],
            "unreachable": reach["unreachable"],
        }
        if hub_est is None or hub.peak_links > hub.conn_limit or (hub_est or 0) > hub.conn_limit:
            failures.append(f"the hub holds more than {hub.conn_limit} links (peak {hub.peak_links})"
                            if hub_est is not None else "no report from the hub")
        if reach["unreachable"]:
            failures.append(f"{len(reach['unreachable'])} router(s) cannot reach the hub: "
                            f"{', '.join(reach['unreachable'][:10])}")
    result["failures"] = failures
    result["passed"] = not failures
    return result


def print_report(result, verbose):
    c = result["convergence"]
    out = []
    head = (f"Weft {result['mode']} convergence test: {result['routers']} routers, "
            f"conn-limit {_limit(result['conn_limit'])}")
    if result["mode"] == "mesh" and result["seed_mode"] == "nodes":
        head += ", every router given every other's address (nodes)"
    elif result["mode"] == "mesh":
        head += f", {result['seed_peers']} seed peer(s) ({result['seed_mode']})"
    else:
        head += f" (hub: {_limit(result['hub']['conn_limit'])})"
    out.append(head)
    out.append(f"  binary:        {result['binary']} ({result['build']})")
    if c["converged"]:
        out.append(f"  converged:     yes, {fmt_s(c['since_last_start_s'])} after the last router started, "
                   f"{fmt_s(c['since_first_start_s'])} after the first (start-up took {fmt_s(c['startup_s'])})")
    else:
        out.append(f"  converged:     NO within {result['timeout_s']:.0f} s")
    out.append(f"  observing:     {c['poll_rounds']} reads of {c['observer']}'s /report, "
               f"{1000 * (c['poll_round_mean_s'] or 0):.0f} ms each on average; final sweep of every /report "
               f"{fmt_s(c['final_sweep_s'])}")
    ch = c["converged_hops"]
    if ch and ch["max"] is not None:
        out.append(f"  at convergence: hops max {ch['max']}, mean {ch['mean']:.2f} (shortest paths in the observer's view)")
    sh = c["settled_hops"]
    out.append(f"  settled:       last link change {fmt_s(c['last_change_s'])} after the last start; "
               f"{c['changes_after_convergence']} link changes after convergence, per 10 s: "
               f"{c['changes_per_10s_after_convergence']}"
               + (f"; hops max {sh['max']}, mean {sh['mean']:.2f} in the observer's view" if sh and sh["max"] is not None else ""))
    e = result["established"]
    if e:
        out.append(f"  established:   min {e['min']} / median {e['median']:g} / max {e['max']} links per router "
                   f"(mean {e['mean']:.1f}, limit {_limit(result['conn_limit'])})")
    comps = result["components"]
    if len(comps) > 1:
        out.append(f"  partitioned:   the links form {len(comps)} separate groups of "
                   + ", ".join(str(len(c)) for c in comps) + " routers: "
                   + "; ".join(_span(c) for c in comps))
    if result["isolated"]:
        out.append(f"  isolated:      {len(result['isolated'])} router(s) with no established link: "
                   f"{', '.join(result['isolated'])}")
    out.append("  limit:         " + ("no router exceeded its limit (links each record listed in the observer's view at every read, and each router's own at the end)"
                                      if not result["over_limit"] else f"EXCEEDED by {', '.join(result['over_limit'])}"))
    mr = result["refused_for_limit_metrics_total"]
    rate = result["refused_for_limit_total"] / c["run_s"] if c["run_s"] else 0
    out.append(f"  refused:       {result['refused_for_limit_total']} inbound connections refused for the limit ({rate:.0f}/s) "
               f"(on {result['refused_for_limit_routers']} routers; metrics say {mr if mr is not None else 'n/a'})")
    out.append(f"  terminations:  {result['terminations_total']} links ended during the run (all routers)")
    h = result["hops"]
    if h["max"] is not None:
        hist = ", ".join(f"{k} hop{'s' if k != '1' else ''}: {v}" for k, v in h["histogram"].items())
        out.append(f"  route hops:    max {h['max']}, mean {h['mean']:.2f} over all ordered pairs ({hist})"
                   + (f"; {h['broken_paths']} broken paths e.g. {', '.join(h['broken_examples'])}" if h["broken_paths"] else ""))
    m = result["vm_hwm_kib"]
    if m:
        out.append(f"  peak RSS:      VmHWM min {mib(m['min']):.1f} / median {mib(m['median']):.1f} / "
                   f"max {mib(m['max']):.1f} MiB per router, total {mib(m['total']):.1f} MiB")
    cpu = result["cpu_s"]
    if cpu:
        out.append(f"  CPU:           user + system {cpu['min']:.1f} / median {cpu['median']:.1f} / "
                   f"max {cpu['max']:.1f} s per router since its start, total {cpu['total']:.0f} s")
    if result["mode"] == "hub":
        hub = result["hub"]
        out.append(f"  hub:           {hub['name']} ({hub['address']}) holds {hub['established']} established links "
                   f"(limit {hub['conn_limit']}, {'exactly at' if hub['at_limit'] else 'NOT at'} the limit; peak "
                   f"{hub['peak_links']}); refused {hub['refused_for_limit']} for the limit")
        hops = [x for x in hub["via_another_peer_hops"] if x is not None]
        out.append(f"  reach the hub: {hub['reach_directly'] + hub['reach_via_another_peer']}/{hub['others']} others "
                   f"({hub['reach_directly']} directly, {hub['reach_via_another_peer']} via another peer"
                   + (f", {_range(hops)} hops" if hops else "") + ")"
                   + (f"; UNREACHABLE: {', '.join(hub['unreachable'])}" if hub["unreachable"] else ""))
        if hub["via_another_peer"]:
            out.append(f"                 via another peer: {', '.join(hub['via_another_peer'])}")
    if verbose:
        out.append("")
        out.append(f"  {'router':<7}{'address':<14}{'est':>4}{'pend':>5}{'peak':>5}{'limit':>6}{'routes':>7}"
                   f"{'hops':>5}{'refused':>8}{'term':>5}{'HWM MiB':>9}  initial peers")
        for p in result["per_router"]:
            hwm = f"{mib(p['vm_hwm_kib']):.1f}" if p["vm_hwm_kib"] else "-"
            initial = p["initial_peers"]
            peers = " ".join(initial) if len(initial) <= 3 else f"{len(initial)} peers"
            peers = peers or "-"
            out.append(
                f"  {p['nickname']:<7}{p['address']:<14}{_v(p['established']):>4}{_v(p['pending']):>5}"
                f"{p['peak_links']:>5}{p['conn_limit']:>6}{_v(p['routes']):>7}{_v(p['max_hops']):>5}"
                f"{_v(p['refused_for_limit']):>8}{_v(p['terminations']):>5}"
                f"{hwm:>9}  {peers}"
            )
    out.append(("  result:        PASS" if result["passed"] else "  result:        FAIL: " + "; ".join(result["failures"])))
    print("\n".join(out), flush=True)


def _limit(limit):
    return "0 (unlimited)" if limit == 0 else str(limit)


def _range(values):
    return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _span(nicks):
    return ", ".join(nicks) if len(nicks) <= 4 else f"{nicks[0]}, {nicks[1]} ... {nicks[-1]}"


def _v(value):
    return "-" if value is None else str(value)


def print_problem_logs(routers, result):
    """On failure, the log tails of the routers most likely to explain it."""
    suspects = [r for r in routers if r.nickname in result.get("over_limit", [])]
    # Then those that see the fewest routes (an isolated router first).
    incomplete = [r for r in routers if r.complete_since is None and r not in suspects]
    incomplete.sort(key=lambda r: (len((r.report or {}).get("UnicastRoutes") or []), r.index))
    suspects += incomplete
    for r in suspects[:3]:
        tail = r.log_tail(12)
        if tail:
            log(f"--- log tail of {r.nickname} ({r.ip}):\n{tail}")


def dump_reports(routers, directory):
    os.makedirs(directory, exist_ok=True)
    for r in routers:
        if r.report is not None:
            with open(os.path.join(directory, f"{r.nickname}.json"), "w") as f:
                json.dump(r.report, f, indent=1)
    log(f"last reports written to {directory}")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Weft control-plane mesh convergence load test (loopback only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("mode", nargs="?", choices=("mesh", "hub"), default="mesh",
                   help="mesh: N routers with seed peers; hub: one hub and N others given only the hub")
    p.add_argument("--routers", type=int, default=None,
                   help="routers to start (hub mode: routers besides the hub); default 40 (mesh), 31 (hub)")
    p.add_argument("--conn-limit", type=int, default=30, help="--conn-limit of every router")
    p.add_argument("--hub-conn-limit", type=int, default=None, help="hub mode: the hub's limit (default: --conn-limit)")
    p.add_argument("--seed-peers", type=int, default=1, metavar="K",
                   help="mesh mode: initial peers per router (1 = everyone points at router 1)")
    p.add_argument("--seed-mode", choices=("first", "previous", "nodes"), default="first",
                   help="mesh mode: seeds are routers 1..K (first), the K routers started just before (previous), "
                        "or every other router, started or not, as the Kubernetes Node list gives them (nodes; "
                        "ignores --seed-peers)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds from the first start to give up on convergence and on the links settling")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to keep observing after convergence at least")
    p.add_argument("--quiet", type=float, default=150.0,
                   help="the mesh has settled once its links went this many seconds without a change "
                        "(rebalancing acts every ~10 s and may drop a link once it is 2 min old)")
    p.add_argument("--observer", type=int, default=1, metavar="I",
                   help="router whose /report the test reads while the mesh forms (1 = the first)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between reads of the observer's /report")
    p.add_argument("--start-interval", type=float, default=0.05, help="seconds between router starts")
    p.add_argument("--weft", help="weft binary (default: $CARGO_TARGET_DIR or target/, release if built, else debug)")
    p.add_argument("--build", action="store_true", help="run `cargo build --release` first and use that binary")
    p.add_argument("--ip-prefix", default="127.0.0", help="first three octets of the routers' loopback addresses")
    p.add_argument("--ip-offset", type=int, default=10, help="router i gets <ip-prefix>.<ip-offset + i>")
    p.add_argument("--port", type=int, default=6783, help="mesh port (every router, on its own address)")
    p.add_argument("--http-port", type=int, default=6784)
    p.add_argument("--metrics-port", type=int, default=6782)
    p.add_argument("--router-log-level", default=None, help="routers' --log-level (default: warn, info with --verbose)")
    p.add_argument("--keep-logs", action="store_true", help="keep the routers' logs and print where")
    p.add_argument("--dump-reports", metavar="DIR",
                   help="write each router's last /report to DIR/<nickname>.json (for digging into a failure)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the report")
    p.add_argument("--verbose", "-v", action="store_true", help="per-router table; routers log at info")
    args = p.parse_args(argv)
    if args.routers is None:
        args.routers = 40 if args.mode == "mesh" else 31
    if args.hub_conn_limit is None:
        args.hub_conn_limit = args.conn_limit
    if args.routers < 1 or (args.mode == "mesh" and args.routers < 2):
        p.error("--routers too small")
    if args.seed_peers < 1:
        p.error("--seed-peers must be at least 1")
    if args.conn_limit < 0 or args.hub_conn_limit < 0:
        p.error("connection limits cannot be negative")
    if not 1 <= args.observer <= args.routers:
        p.error("--observer must name one of the routers")
    if args.timeout <= 0 or args.poll_interval <= 0 or args.settle < 0 or args.quiet < 0 or args.start_interval < 0:
        p.error("times must be positive")
    if args.weft and args.build:
        p.error("--weft and --build are exclusive")
    return args


def main(argv=None):
    global _LIBC
    args = parse_args(argv)
    try:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _LIBC = None

    def on_signal(signum, _frame):
        raise Terminated(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    root = None
    routers = []
    code = EXIT_FAILED
    result = None
    try:
        binary = find_binary(args)
        root = tempfile.mkdtemp(prefix=f"weft-loadtest-{args.mode}-")
        os.makedirs(os.path.join(root, "logs"))
        routers = plan(args, root)
        log_level = args.router_log_level or ("info" if args.verbose else "warn")
        log(f"{args.mode}: {len(routers)} routers on {routers[0].ip}..{routers[-1].ip}, binary {binary}")
        timings = run_test(args, routers, binary, log_level)
        result = evaluate(args, routers, timings, binary)
        if args.dump_reports:
            dump_reports(routers, args.dump_reports)
        code = EXIT_OK if result["passed"] else EXIT_FAILED
    except SetupError as err:
        log(f"error: {err}")
        code = EXIT_SETUP
    except Terminated as term:
        log(f"interrupted by signal {term.signum}; stopping the routers")
        code = EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - report, clean up, fail
        log(f"error: {err}")
        code = EXIT_FAILED
    finally:
        # No second signal may cut the cleanup short (it is bounded: STOP_GRACE then SIGKILL).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if result is not None and not result["passed"]:
            print_problem_logs(routers, result)
        killed = stop_all(routers)
        if killed:
            log(f"{killed} router(s) needed SIGKILL")
        if root is not None:
            shutil.rmtree(os.path.join(root, "db"), ignore_errors=True)
            if args.keep_logs:
                log(f"router logs kept in {os.path.join(root, 'logs')}")
            else:
                shutil.rmtree(root, ignore_errors=True)

    if result is not None:
        if args.json:
            json.dump(result, sys.stdout, indent=2)
            print()
        else:
            print_report(result, args.verbose)
    return code


if __name__ == "__main__":
    sys.exit(main())
