#!/usr/bin/env bash
# Starts a local 3-member detcd cluster on loopback, in the foreground; Ctrl-C stops all three.
#
#   bash server/local-cluster.sh            # data in ./local-cluster/
#
# Clients: --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
# Peers:   127.0.0.1:2380, 127.0.0.1:22380, 127.0.0.1:32380
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p detcd-server --bin detcd
bin=target/release/detcd
data=${DETCD_LOCAL_DATA:-local-cluster}
mkdir -p "$data"
cluster="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  client=$(( i == 1 ? 2379 : i * 10000 + 2379 ))
  peer=$(( client + 1 ))
  "$bin" --name "m$i" --data-dir "$data/m$i.detcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new 2>&1 | sed "s/^/m$i | /" &
  pids+=($!)
done
echo "detcd: 3 members up; endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 (Ctrl-C stops)"
wait
