#!/usr/bin/env bash
# Single-member put throughput, detcd next to Debian's etcd 3.4, same machine, same run, same
# client (tests/src/bin/put-qps.rs). Both fsync every commit (etcd always does; detcd syncs
# each group commit). Prints one line per run; nothing here is a test.
#
#   bash tests/bench-put.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
if ! command -v etcd >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  $as_root apt-get install -y -qq etcd-server
fi
cargo build --release -q -p detcd-server --bin detcd -p detcd-tests --bin put-qps
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

etcd --name bench --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:12379 \
  --advertise-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 \
  --initial-advertise-peer-urls http://127.0.0.1:12380 --initial-cluster bench=http://127.0.0.1:12380 \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
target/release/detcd --name bench --data-dir "$work/detcd" --listen-client-urls http://127.0.0.1:22379 \
  --advertise-client-urls http://127.0.0.1:22379 --listen-peer-urls http://127.0.0.1:22380 \
  --initial-advertise-peer-urls http://127.0.0.1:22380 --initial-cluster bench=http://127.0.0.1:22380 \
  --log-level warn >"$work/detcd.log" 2>&1 &
pids+=($!)
sleep 3
echo "$(etcd --version | head -1); detcd $(target/release/detcd --version | head -1); $(nproc) cores; $(date -u +%F)"
for clients in 1 64; do
  for server in etcd:127.0.0.1:12379 detcd:127.0.0.1:22379; do
    printf '%-6s ' "${server%%:*}"
    target/release/put-qps "${server#*:}" "$clients" "$seconds" 256
  done
done
