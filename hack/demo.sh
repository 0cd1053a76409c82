#!/usr/bin/env bash
# Runs a container inside a VM through a private containerd.
#
# Everything it creates lives in $SCC_DEMO_DIR (default /var/lib/scc/demo):
# containerd's root, state, sockets and config, and the shim's config. No
# file in /etc is written and no system service is touched. It stops its
# containerd when done; run it again to repeat.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${SCC_BIN:-$top/bin}
ctrd_bin=${CONTAINERD_BIN:?set CONTAINERD_BIN (make demo sets it)}
guest=${GUEST_DIR:-$top/build/guest}
dir=${SCC_DEMO_DIR:-/var/lib/scc/demo}
image=scc.local/busybox:latest

# Leftovers of an interrupted run.
if [[ -S $dir/containerd.sock ]]; then
  pkill -f -- "--config $dir/config.toml" || true
fi
rm -rf "$dir"
mkdir -p "$dir/run" "$dir/logs"

cat > "$dir/scc.toml" <<TOML
# scc shim configuration for the demo.
state_dir = "$dir/run"
guest_dir = "$guest"

[vm]
log_dir = "$dir/logs"

[snapshot]
# The demo boots its VM; see docs/install.md for VM templates.
enabled = false
TOML
"$bin/scc" containerd-config "$dir" > "$dir/config.toml"

echo "== starting a private containerd in $dir"
PATH="$bin:$ctrd_bin:$PATH" SCC_CONFIG="$dir/scc.toml" \
  setsid "$ctrd_bin/containerd" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
ctrd_pid=$!
ctr() { "$ctrd_bin/ctr" --address "$dir/containerd.sock" --namespace scc "$@"; }
cleanup() {
  kill "$ctrd_pid" 2>/dev/null || true
  wait "$ctrd_pid" 2>/dev/null || true
  # Snapshot mounts of containerd's root.
  grep -o " $dir/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null

echo "== importing $image (busybox-static in an OCI layout, made locally)"
"$bin/scc" image busybox -o "$dir/busybox.tar" --ref "$image"
ctr images import "$dir/busybox.tar" >/dev/null

echo "== host kernel: $(uname -r)"
echo "== ctr run --rm --runtime io.containerd.scc.v2 $image demo sh -c 'echo hello from a VM; uname -r'"
ctr run --rm --runtime io.containerd.scc.v2 "$image" demo sh -c 'echo hello from a VM; uname -r'
