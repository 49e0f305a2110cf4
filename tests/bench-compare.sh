#!/usr/bin/env bash
# detcd next to Debian's etcd 3.4 on this machine, in the same run, through the same client
# (detcd-bench, tests/src/bin/detcd-bench.rs): one member each, then three members each, on
# loopback with data in temp dirs. Both sync every commit to disk (etcd always does; detcd syncs
# each group commit) and run with their default settings otherwise. Each workload runs against
# etcd, then against detcd, then the next workload; the table gives both figures and their ratio.
# A measurement, not a test: nothing here asserts a figure.
#
#   bash tests/bench-compare.sh [--quick] [--members 1|3|both]
#
#   --quick      tiny totals: checks that everything runs (about a minute), figures meaningless
#   --members    one-member clusters, three-member clusters, or both (default both)
#
# The full run takes about 7 minutes after the build (ten seconds per throughput workload).
# Each run's JSON report is kept in $DETCD_BENCH_OUT (default: a temp dir, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
members=both
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=true ;;
    --members) members=${2:?--members needs 1, 3 or both}; shift ;;
    --members=*) members=${1#--members=} ;;
    -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$members" in
  1) sizes=(1) ;;
  3) sizes=(3) ;;
  both) sizes=(1 3) ;;
  *) echo "--members: 1, 3 or both, not $members" >&2; exit 2 ;;
esac

if ! command -v etcd >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  $as_root apt-get install -y -qq etcd-server
fi
cargo build --release -q -p detcd-server --bin detcd -p detcd-tests --bin detcd-bench
detcd_bin=$PWD/target/release/detcd
bench_bin=$PWD/target/release/detcd-bench

work=$(mktemp -d -t detcd-bench-compare.XXXXXX)
out=${DETCD_BENCH_OUT:-$work/reports}
mkdir -p "$out"
pids=()
stop_servers() {
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  pids=()
}
cleanup() { stop_servers; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Workload sizes. Throughput runs are bounded in time, so that a slow server does not stretch
# the run; the watch runs are bounded in puts (every watcher must see every event).
if $quick; then
  kv=(--total 200)
  watch_puts=20
  latency_puts=20
  rss_streams=10
else
  kv=(--duration 10s)
  watch_puts=1000
  latency_puts=500
  rss_streams=100
fi

# start_cluster KIND N BASE_PORT [TAG]: N members of etcd or detcd, member i with client port
# BASE+10*i and peer port BASE+10*i+1, data under a directory named after KIND, N and TAG;
# sets $endpoints and appends to $pids and $server_pids.
start_cluster() {
  local kind=$1 n=$2 base=$3 tag=${4:-} i port cluster="" client peer
  endpoints=""
  server_pids=""
  for ((i = 0; i < n; i++)); do
    for port in $((base + 10 * i)) $((base + 10 * i + 1)); do
      # A server already there would answer in place of the one this script starts.
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is taken: stop what listens there first" >&2
        exit 1
      fi
    done
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 10 * i + 1))"
  done
  for ((i = 0; i < n; i++)); do
    client=http://127.0.0.1:$((base + 10 * i))
    peer=http://127.0.0.1:$((base + 10 * i + 1))
    local flags=(--name "m$i" --data-dir "$work/$kind-$n$tag-m$i" --listen-client-urls "$client"
      --advertise-client-urls "$client" --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
      --initial-cluster "$cluster" --initial-cluster-state new)
    if [ "$kind" = etcd ]; then
      etcd "${flags[@]}" >"$work/$kind-$n$tag-m$i.log" 2>&1 &
    else
      "$detcd_bin" "${flags[@]}" --log-level warn >"$work/$kind-$n$tag-m$i.log" 2>&1 &
    fi
    pids+=($!)
    server_pids+="${server_pids:+,}$!"
    endpoints+="${endpoints:+,}127.0.0.1:$((base + 10 * i))"
  done
  # Ready when a put through the first member succeeds (a leader exists); at most 30 s.
  local tries
  for ((tries = 0; tries < 60; tries++)); do
    # (detcd-bench exits 0 when requests fail: it counts them, so the report is what tells.)
    if "$bench_bin" --endpoints "${endpoints%%,*}" --total 1 --progress never --output json put 2>/dev/null |
      grep -q '"errors_total":0,'; then
      return 0
    fi
    sleep 0.5
  done
  echo "$kind with $n members did not become ready; its logs:" >&2
  tail -n 20 "$work/$kind-$n$tag-"*.log >&2
  exit 1
}

# field FILE NAME: a number from a one-line JSON report (names are unique in it).
field() {
  grep -o "\"$2\":[-0-9.e+]*" "$1" | sed -n 1p | cut -d: -f2
}

# run SERVER NAME BENCH-ARGS...: one detcd-bench run against SERVER (etcd or detcd).
run() {
  local server=$1 name=$2
  shift 2
  local eps pidlist
  if [ "$server" = etcd ]; then eps=$etcd_endpoints pidlist=$etcd_pids; else eps=$detcd_endpoints pidlist=$detcd_pids; fi
  local file="$out/$n-$name-$server.json"
  printf '  %-6s %s ... ' "$server" "$name" >&2
  if ! "$bench_bin" --endpoints "$eps" --rss-pids "$pidlist" --output json --progress never "$@" >"$file" 2>"$file.err"; then
    echo "failed: $(cat "$file.err")" >&2
    echo '{}' >"$file"
    return 0
  fi
  echo "$(field "$file" per_s)/s, $(field "$file" errors_total) errors" >&2
}

# row TITLE NAME FIELD SCALE: a table row with FIELD of both servers' reports of workload
# NAME, divided by SCALE, and their ratio; a run with failed requests shows how many.
row() {
  local title=$1 name=$2 what=$3 scale=$4 e d cell_e cell_d ratio
  e=$(field "$out/$n-$name-etcd.json" "$what")
  d=$(field "$out/$n-$name-detcd.json" "$what")
  cell() {
    local v=$1 file=$2 errors
    if [ -z "$v" ]; then printf 'failed'; return; fi
    awk -v v="$v" -v s="$scale" 'BEGIN { x = v / s; if (x >= 100) printf "%.0f", x; else printf "%.2f", x }'
    errors=$(field "$file" errors_total)
    if [ -n "$errors" ] && [ "$errors" != 0 ]; then printf ' (%s errors)' "$errors"; fi
  }
  cell_e=$(cell "$e" "$out/$n-$name-etcd.json")
  cell_d=$(cell "$d" "$out/$n-$name-detcd.json")
  if [ -n "$e" ] && [ -n "$d" ]; then
    ratio=$(awk -v e="$e" -v d="$d" 'BEGIN { if (e > 0) printf "%.2f", d / e; else printf "-" }')
  else
    ratio="-"
  fi
  echo "| $title | $cell_e | $cell_d | $ratio |"
}

tables=()
for n in "${sizes[@]}"; do
  echo "== $n member(s): starting etcd and detcd" >&2
  start_cluster etcd "$n" 12379
  etcd_endpoints=$endpoints etcd_pids=$server_pids
  start_cluster detcd "$n" 22379
  detcd_endpoints=$endpoints detcd_pids=$server_pids
  many=(--conns 8 --clients 64)

  for server in etcd detcd; do run "$server" put-1 --conns 1 --clients 1 "${kv[@]}" put --key-size 8 --val-size 256 --key-space-size 100000; done
  for server in etcd detcd; do run "$server" put-64 "${many[@]}" "${kv[@]}" put --key-size 8 --val-size 256 --key-space-size 100000; done
  for server in etcd detcd; do
    # The key the range workloads read, 256 bytes of value.
    run "$server" range-key --total 1 put --key-size 8 --val-size 256 >/dev/null
  done
  for server in etcd detcd; do run "$server" range-l "${many[@]}" "${kv[@]}" range 00000000 --consistency l; done
  for server in etcd detcd; do run "$server" range-s "${many[@]}" "${kv[@]}" range 00000000 --consistency s; done
  for server in etcd detcd; do run "$server" txn-put "${many[@]}" "${kv[@]}" txn-put --txn-ops 4 --key-size 8 --val-size 256 --key-space-size 100000; done
  for server in etcd detcd; do run "$server" lease-keepalive "${many[@]}" "${kv[@]}" lease-keepalive; done
  for server in etcd detcd; do
    run "$server" watch --conns 4 --clients 8 watch --streams 10 --watch-per-stream 100 --put-total "$watch_puts" --key-size 8 --val-size 256
  done
  for server in etcd detcd; do
    run "$server" watch-latency --conns 4 watch-latency --streams 10 --watchers-per-stream 10 --put-total "$latency_puts" --put-rate 100 --val-size 256
  done
  # Last, as the watchers' memory may stay with the server after they are gone. This one
  # measures the watchers on top of everything the load before left in memory (detcd keeps
  # every version of every key in memory until compaction, etcd in bbolt's page cache, which
  # RSS counts only in part), so it is given as a second row, labelled "after the load".
  for server in etcd detcd; do
    run "$server" watch-rss-loaded --conns 10 --clients 1 watch --streams "$rss_streams" --watch-per-stream 1000 --put-total 0 --key-size 8
  done
  stop_servers
  # The watchers alone: a fresh pair of clusters (new data directories and ports), nothing
  # written but the readiness probe.
  echo "== $n member(s): fresh etcd and detcd for the watchers' memory" >&2
  start_cluster etcd "$n" 13379 -fresh
  etcd_endpoints=$endpoints etcd_pids=$server_pids
  start_cluster detcd "$n" 23379 -fresh
  detcd_endpoints=$endpoints detcd_pids=$server_pids
  for server in etcd detcd; do
    run "$server" watch-rss --conns 10 --clients 1 watch --streams "$rss_streams" --watch-per-stream 1000 --put-total 0 --key-size 8
  done
  stop_servers

  watchers=$((rss_streams * 1000))
  tables+=("$(
    echo "### $n member(s)"
    echo
    echo "| workload | etcd | detcd | detcd/etcd |"
    echo "|---|---|---|---|"
    row "put, 1 client: puts/s" put-1 per_s 1
    row "put, 1 client: p50 latency, ms (lower is better)" put-1 p50 1
    row "put, 64 clients: puts/s" put-64 per_s 1
    row "put, 64 clients: p99 latency, ms (lower is better)" put-64 p99 1
    row "range linearizable, 64 clients: reads/s" range-l per_s 1
    row "range serializable, 64 clients: reads/s" range-s per_s 1
    row "txn-put (4 puts per txn), 64 clients: txns/s" txn-put per_s 1
    row "lease-keepalive, 64 clients: keepalives/s" lease-keepalive per_s 1
    row "watch, 1,000 watchers of one key: events/s delivered" watch per_s 1
    row "watch-latency, 100 watchers: p50 put-to-event, ms (lower is better)" watch-latency p50 1
    row "watch-latency, 100 watchers: p99 put-to-event, ms (lower is better)" watch-latency p99 1
    row "server RSS before the watchers, fresh server, MiB (lower is better)" watch-rss server_rss_kib_before_watchers 1024
    row "server RSS with $watchers watchers, fresh server, MiB (lower is better)" watch-rss server_rss_kib_with_watchers 1024
    row "server RSS before the watchers, after the load above, MiB (lower is better)" watch-rss-loaded server_rss_kib_before_watchers 1024
    row "server RSS with $watchers watchers, after the load above, MiB (lower is better)" watch-rss-loaded server_rss_kib_with_watchers 1024
  )")
done

echo
echo "$(etcd --version | sed -n 1p); $("$detcd_bin" --version 2>/dev/null | sed -n 1p); $(nproc) cores; $(date -u '+%F %H:%M UTC')$($quick && echo '; --quick: figures meaningless')"
for table in "${tables[@]}"; do
  echo
  echo "$table"
done
