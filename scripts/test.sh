#!/usr/bin/env bash
# The project's test command (README): formatting, lints, the whole test suite, the loom
# models and the benchmark smoke run. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustfmt and clippy come with rustup's default profile; add them where a minimal one lacks them.
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== style limits (functions ≤ 70 lines, lines ≤ 100 columns)"
bash scripts/check-style.sh

echo "== engine layers (each folder imports only from below)"
bash scripts/check-layers.sh

# ---- the minimum Rust versions (README "Minimum Rust version") ------------------------------
# Every workspace crate is checked (all targets) on the toolchain its `rust-version` names,
# installed here with rustup's minimal profile if missing. ARBOR_SKIP_MSRV=1 skips the step
# (a machine without rustup's server); CI never sets it.
msrv_of() { # CRATE_DIR -> the rust-version it declares or inherits
  local own
  own=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$1/Cargo.toml")
  if [ -n "$own" ]; then echo "$own"; else sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml; fi
}
if [ "${ARBOR_SKIP_MSRV:-0}" = 1 ]; then
  echo "== MSRV check skipped (ARBOR_SKIP_MSRV=1)"
elif ! command -v rustup >/dev/null; then
  echo "error: the MSRV check needs rustup (or set ARBOR_SKIP_MSRV=1)" >&2
  exit 1
else
  members=$(sed -n 's/^members = \[\(.*\)\]/\1/p' Cargo.toml | tr -d '",')
  if [ -z "$members" ]; then
    echo "error: no one-line members = [...] in Cargo.toml for the MSRV check to read" >&2
    exit 1
  fi
  for version in $(for m in $members; do msrv_of "$m"; done | sort -u); do
    pkgs=()
    for m in $members; do
      if [ "$(msrv_of "$m")" = "$version" ]; then
        pkgs+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$m/Cargo.toml" | head -1)")
      fi
    done
    echo "== MSRV: cargo +$version check ${pkgs[*]}"
    if ! rustup run "$version" rustc --version >/dev/null 2>&1; then
      rustup toolchain install "$version" --profile minimal
    fi
    CARGO_TARGET_DIR=target/msrv cargo +"$version" check --all-targets "${pkgs[@]}"
  done
fi

echo "== std::sync outside the sync facade"
if grep -rnE 'std::sync::(Mutex|RwLock|atomic|Arc|Condvar)|parking_lot' engine/src \
    | grep -vE '^engine/src/sync\.rs:'; then
  echo "error: engine/src must take locks and atomics from crate::sync (loom facade)" >&2
  exit 1
fi

echo "== cargo test"
cargo test --workspace

# The engine's tests once more with every test store on tmpfs, where files are buffered (no
# O_DIRECT; design.md §7): ARBOR_TEST_DIR moves arbor-testkit's temporary directories, TMPDIR
# the README example's file. The engine only, to keep the extra time small.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  echo "== cargo test -p arbor with the stores on tmpfs (buffered I/O)"
  shm_dir=$(mktemp -d /dev/shm/arbor-test.XXXXXX)
  ARBOR_TEST_DIR="$shm_dir" TMPDIR="$shm_dir" cargo test -p arbor
  rm -rf "$shm_dir"
else
  echo "skipped the tmpfs pass: no writable /dev/shm"
fi

# And once more with every test store in memory (design.md §7, "Test stores"): the stores
# the tests open by path through arbor_testkit::store live on MemDevices named by those
# paths, reopened with the same bytes; tests that need a real file say so and are skipped
# (they ran above). Unit and integration tests only: the doctests open files through the
# library's own path API, which the passes above ran. The binaries are those built above.
echo "== cargo test -p arbor --tests with the test stores in memory (ARBOR_TEST_STORE=memory)"
ARBOR_TEST_STORE=memory cargo test -p arbor --tests

if [ -d loom-tests/tests ]; then
  echo "== loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2})"
  LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} RUSTFLAGS="--cfg loom" \
    CARGO_TARGET_DIR=target/loom cargo test --release -p arbor-loom-tests
fi

# ---- the whole-system simulator (engine/examples/sim) ---------------------------------------
# Seeds derive from the commit, so every CI run explores new ones; any failure prints a
# one-line reproduction and fails the run. ARBOR_SIM_SECS runs it longer (README: Testing).
echo "== simulator (${ARBOR_SIM_SECS:-120} s)"
cargo run -q --release -p arbor --example sim -- --time-budget "${ARBOR_SIM_SECS:-120}" \
  --jobs 2 --base-seed "$(git rev-parse --short HEAD 2>/dev/null || echo 0)"

# ---- kv-bench device mode on a loop device (issue 12) -------------------------------------
# Arbor on a raw block device end to end with the smoke sizes (a few seconds). Needs root (or
# loop-device rights); where losetup is refused, say why and skip.
echo "== kv-bench --device on a loop device"
kvb_img=$(mktemp -p target kv-bench-loop.XXXXXX)
truncate -s 256M "$kvb_img"
if kvb_dev=$(losetup -f --show --direct-io=on "$kvb_img" 2>&1); then
  trap 'losetup -d "$kvb_dev"; rm -f "$kvb_img"' EXIT
  cargo run -q -p arbor-bench --bin kv-bench -- --quick-smoke --device "$kvb_dev" \
    --i-know-this-erases --dir target
  losetup -d "$kvb_dev"
  rm -f "$kvb_img"
  trap - EXIT
else
  echo "skipped: losetup -f --show --direct-io=on refused: $kvb_dev"
  rm -f "$kvb_img"
fi
# ---- end kv-bench device mode ---------------------------------------------------------------
