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

echo "== building and running the tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --all-features 2>&1 | tee "$log" || status=$?

# One closing line over every runner: cargo's "test result:" lines and the
# "N passed, N failed" lines of our own harnesses.
awk '
	/^test result:/ { p += $4; f += $6 }
	/^[0-9]+ passed, [0-9]+ failed/ { p += $1; f += $3 }
	END { printf "all tests: %d passed, %d failed\n", p, f }
' "$log"
exit "$status"
