# Shell helpers shared by the quick start and the data-plane benchmark (sourced, not run):
# installing missing Debian packages, and removing a network namespace with everything in it.

# Installs Debian packages for the commands that are missing (one apt-get update at most).
apt_updated=false
need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "Installing $2..."
  $apt_updated || { apt-get update -qq; apt_updated=true; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# Stops every process inside the namespace (routers, pings, iperf3), then deletes it. Idempotent.
remove_namespace() {
  local ns=$1 pids _
  [ -e "/var/run/netns/$ns" ] || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 30); do
      [ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ] && break
      sleep 0.1
    done
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && { kill -9 $pids 2>/dev/null || true; sleep 0.2; }
  fi
  ip netns del "$ns" 2>/dev/null || true
}
