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
cargo test --release --workspace --all-features 2>&1
