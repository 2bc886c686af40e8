#!/usr/bin/env bash
# The demo: set up a fresh Debian machine (as root), build Linux as a
# library, boot it inside this process and talk to it through its system
# calls; then run an unmodified program with every one of its system calls
# interposed by zpoline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
echo "== building the LKL kernel (cached in ${LKL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lkl})"
bash scripts/build-kernel.sh >/dev/null
cargo build --release -q -p lkl-boot-test --example boot -p loader

echo
echo "== Linux 6.12 booted as a library: the boot test's checks, from inside this process"
target/release/examples/boot

echo
echo "== zpoline: 'ls /' with every system call interposed (vm.mmap_min_addr must be 0)"
if [[ $(sysctl -n vm.mmap_min_addr) != 0 ]]; then
	sysctl -q -w vm.mmap_min_addr=0
fi
target/release/lkl-run --zpoline --backend host --count ls /
