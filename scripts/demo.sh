#!/usr/bin/env bash
# The demo: set up a fresh Debian machine (as root), build Linux as a
# library, boot it inside this process and talk to it through its system
# calls; run an unmodified program with every one of its system calls
# interposed by zpoline; and run `ip` with its sockets served by LKL's
# network stack through the hijack library, in a network namespace made for
# the demo (removed at exit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
echo "== building the LKL kernel (cached in ${LKL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lkl})"
bash scripts/build-kernel.sh >/dev/null
cargo build --release -q -p loader -p lkl-hijack
cargo build --release -q -p lkl-boot-test --example boot

echo
echo "== Linux 6.12 booted as a library: the boot test's checks, from inside this process"
target/release/examples/boot

echo
echo "== zpoline: 'ls /' with every system call interposed (vm.mmap_min_addr must be 0)"
if [[ $(sysctl -n vm.mmap_min_addr) != 0 ]]; then
	sysctl -q -w vm.mmap_min_addr=0
fi
target/release/lkl-run --zpoline --backend host --count ls /

echo
echo "== the hijack library: 'ip address show' and 'ip route' answered by LKL's network stack"
echo "   (in a network namespace made for the demo, with a tap for LKL's eth0)"
ns=lkldemo-$$
conf=$(mktemp --suffix=.json)
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -f "$conf"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip tuntap add dev lkltap0 mode tap
ip netns exec "$ns" ip address add 198.18.0.1/24 dev lkltap0
ip netns exec "$ns" ip link set lkltap0 up
cat >"$conf" <<'JSON'
{
	"interfaces": [
		{
			"type": "tap",
			"param": "lkltap0",
			"ip": "198.18.0.2",
			"masklen": "24",
			"mac": "02:11:22:33:44:55"
		}
	]
}
JSON
ip netns exec "$ns" env LKL_HIJACK_CONFIG_FILE="$conf" bin/lkl-hijack.sh ip address show 2>/dev/null
ip netns exec "$ns" env LKL_HIJACK_CONFIG_FILE="$conf" bin/lkl-hijack.sh ip route 2>/dev/null
