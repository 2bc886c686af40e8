#!/usr/bin/env bash
# The project's test command: set up a fresh Debian machine (as root), build
# the kernel library through its cache and run every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "== building the LKL kernel (cached in ${LKL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lkl})"
bash scripts/build-kernel.sh >/dev/null

echo "== checking formatting"
cargo fmt --all -- --check

# The workspace's lints (every unsafe block documented, ...) are checked here,
# on every target, so what the code claims is what CI enforces.
echo "== checking lints (clippy)"
cargo clippy --release --workspace --all-targets --all-features -- -D warnings

echo "== building and running the tests"
log=$(mktemp)
# The suites set up their own privileges on the host (vm.mmap_min_addr=0 for
# zpoline, /dev/fuse open to every user for lklfuse as non-root): put back what
# was there before, whatever happens.
min_addr=$(sysctl -n vm.mmap_min_addr 2>/dev/null || true)
fuse_mode=$(stat -c %a /dev/fuse 2>/dev/null || true)
restore() {
	rm -f "$log"
	[[ -z $min_addr ]] || sysctl -qw vm.mmap_min_addr="$min_addr" 2>/dev/null || true
	[[ -z $fuse_mode ]] || chmod "$fuse_mode" /dev/fuse 2>/dev/null || true
}
trap restore EXIT
status=0
# --no-fail-fast: a failing suite does not hide the suites after it.
cargo test --release --workspace --all-features --no-fail-fast 2>&1 | tee "$log" || status=$?

# One closing line over every runner: cargo's "test result:" lines (ignored
# tests count as skipped) and the "N passed, N failed[, N skipped]" lines of
# our own harnesses.
awk '
	/^test result:/ { p += $4; f += $6; s += $8 }
	/^[0-9]+ passed, [0-9]+ failed/ { p += $1; f += $3; if ($5 ~ /^[0-9]+$/) s += $5 }
	END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }
' "$log"
# In CI nothing may be skipped: a missing tool or privilege is a failure.
if [[ -n ${CI:-} ]] && grep -qE '^test result:.* [1-9][0-9]* ignored|^[0-9]+ passed, [0-9]+ failed, [1-9]' "$log"; then
	echo "test: tests were skipped or ignored in CI" >&2
	status=1
fi
exit "$status"
