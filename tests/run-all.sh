#!/usr/bin/env bash
# Runs every test of detcd: the README's test command, and what .ci/run calls.
#
#   bash tests/run-all.sh
#
# Works on a fresh machine of the project's kind (Rust toolchain with cargo); installs what it
# needs. Two target directories, one per world: target/ (tokio) and target/madsim (simulator).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Installs Debian package $2 when command $1 is missing (as root, or through sudo).
install_if_missing() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  $as_root apt-get install -y -qq "$2"
}

step "tools: etcdctl 3.4 and etcd 3.4 for the end-to-end tests, protoc for the etcd-client crate's build script, openssl for the TLS test's certificates, curl for the JSON gateway's"
install_if_missing etcdctl etcd-client
install_if_missing etcd etcd-server
install_if_missing protoc protobuf-compiler
install_if_missing openssl openssl
install_if_missing curl curl

step "etcd3gw (the JSON gateway's Python client) in a virtualenv under target/, for tests/tests/gateway.rs"
if ! target/etcd3gw-venv/bin/python -c 'import etcd3gw' >/dev/null 2>&1; then
  install_if_missing python3 python3
  # Debian's python3 has venv (and ensurepip) in a package of its own.
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1 || {
    [ "$(id -u)" -eq 0 ] && as_root="" || as_root="sudo"
    $as_root apt-get update -qq
    $as_root apt-get install -y -qq python3-venv
  }
  rm -rf target/etcd3gw-venv
  python3 -m venv target/etcd3gw-venv
  target/etcd3gw-venv/bin/pip install --quiet --disable-pip-version-check etcd3gw==2.7.0
fi
# sed, not head: head exits after one line and etcdctl, still writing, dies of SIGPIPE (pipefail).
ETCDCTL_API=3 etcdctl version | sed -n 1p
protoc --version

step "format check"
cargo fmt --all -- --check

step "build the detcd and detcd-check binaries the end-to-end tests run"
cargo build --locked -p detcd-server -p detcd-checks --bin detcd --bin detcd-check

step "unit, scenario and property tests (normal world)"
cargo test --workspace --locked

step "benchmarks compile and run on a small store (figures are not checked)"
DETCD_BENCH_KEYS=20000 cargo test --locked -p detcd-engine --benches

step "the simulator world (RUSTFLAGS=--cfg madsim, target/madsim, profile sim): build, replay one seed twice, sweep seeds"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo build --locked --profile sim -p detcd-server -p detcd-sim
# The simulator's own unit tests (schedule, simulated file system) run in the normal world above.
# Determinism: three seeds, each run twice in two processes, must give one trace hash.
for seed in 1 2 3; do
  target/madsim/sim/detcd-sim run --seed "$seed" --nodes 5 --duration 20s --check-determinism
done
# Regression schedules (sim/schedules, each file says what it once broke): 3 members, two seeds each.
for schedule in sim/schedules/*.schedule; do
  for seed in 1 31; do
    target/madsim/sim/detcd-sim run --seed "$seed" --nodes 3 --schedule "$schedule"
  done
done
# The bounded sweep: 100 seeds x 20 simulated seconds x 5 members, every fault kind allowed (each
# seed turns a random subset on, so every kind is on in some seeds), two seeds at a time.
target/madsim/sim/detcd-sim sweep --seeds 1..101 --nodes 5 --duration 20s --faults all --jobs 2

step "engine stays sans-IO (no tokio, no std::fs/net/thread/env, no clock, no OS randomness)"
# Code lines only: comments may name what the engine avoids.
outside=$(grep -rnE 'std::time::(Instant|SystemTime)|Instant::now|SystemTime::now|thread_rng|rand::random|tokio|std::fs|std::net|std::thread|std::env' engine/src | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ -n "$outside" ]; then
  printf '%s\n' "$outside"
  echo "engine/src reaches outside the sans-IO core (see the lines above)" >&2
  exit 1
fi
if cargo tree --locked -p detcd-engine -e normal --prefix none | grep -E '^(tokio|madsim|mio|socket2) '; then
  echo "detcd-engine depends on a runtime or IO crate (see above)" >&2
  exit 1
fi

printf '\nall detcd tests passed\n'
