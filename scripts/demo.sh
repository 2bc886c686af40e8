#!/usr/bin/env bash
# The demo: set up a fresh Debian machine (as root), build Linux as a
# library, boot it inside this process and talk to it through its system
# calls; run an unmodified program with every one of its system calls
# interposed by zpoline; run `ip` with its sockets served by LKL's network
# stack through the hijack library; then the headline: `ping NAME` under
# zpoline backed by LKL, the name resolved by LKL's own resolver
# configuration and the echoes sent by LKL's TCP/IP stack (in a network
# namespace made for the demo, removed at exit); the file system tools
# on a real ext4 image; and a shell's whole process tree on an image as its
# root (--root), as an unprivileged user.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
echo "== building the LKL kernel (cached in ${LKL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lkl})"
bash scripts/build-kernel.sh >/dev/null
cargo build --release -q -p loader -p lkl-hijack -p fs2tar -p cptofs
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
work=$(mktemp -d)
cleanup() {
	if [[ -f $work/dnsmasq.pid ]]; then
		kill "$(cat "$work/dnsmasq.pid")" 2>/dev/null || true
	fi
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$conf" "$work" "/etc/netns/$ns"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip tuntap add dev lkltap0 mode tap
ip netns exec "$ns" ip address add 198.18.0.1/24 dev lkltap0
ip netns exec "$ns" ip link set lkltap0 up
ip netns exec "$ns" ip link set lo up
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
	],
	"nameserver": "198.18.0.1"
}
JSON
ip netns exec "$ns" env LKL_HIJACK_CONFIG_FILE="$conf" bin/lkl-hijack.sh ip address show 2>/dev/null
ip netns exec "$ns" env LKL_HIJACK_CONFIG_FILE="$conf" bin/lkl-hijack.sh ip route 2>/dev/null

echo
echo "== zpoline backed by LKL: 'ping -c 3 testhost.lkl', every system call interposed,"
echo "   the name resolved through LKL (its nameserver, dnsmasq on the namespace's host side)"
echo "   and the echoes sent by LKL's stack; the namespace's own resolv.conf points nowhere"
mkdir -p "/etc/netns/$ns"
echo "nameserver 198.18.99.99" >"/etc/netns/$ns/resolv.conf"
ip netns exec "$ns" dnsmasq --no-resolv --no-hosts --listen-address=198.18.0.1 \
	--bind-interfaces --address=/testhost.lkl/198.18.0.1 --pid-file="$work/dnsmasq.pid"
ip netns exec "$ns" target/release/lkl-run --zpoline --config "$conf" getent hosts testhost.lkl
ip netns exec "$ns" target/release/lkl-run --zpoline --config "$conf" ping -c 3 -i 0.2 testhost.lkl

echo
echo "== the file system tools: an ext4 image made by mkfs.ext4 -d, read back by fs2tar and"
echo "   cpfromfs through LKL (no mount on the host, no root needed)"
mkdir -p "$work/tree/etc" "$work/out"
echo "hello from an ext4 image" >"$work/tree/etc/motd"
ln -s etc/motd "$work/tree/motd-link"
truncate -s 32M "$work/disk.img"
mkfs.ext4 -q -d "$work/tree" "$work/disk.img"
target/release/fs2tar "$work/disk.img" "$work/disk.tar"
tar -tvf "$work/disk.tar"
target/release/cpfromfs -i "$work/disk.img" /etc/motd "$work/out"
cat "$work/out/motd"

echo
echo "== a whole program tree on an image: --root makes an ext4 image (busybox-static in"
echo "   it) the root of every process the shell starts, run as the host user nobody,"
echo "   without FUSE or privilege; what it writes is in the image (debugfs), which"
echo "   e2fsck finds clean"
mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/dev" "$work/root/sys" "$work/root/data"
cp /bin/busybox "$work/root/bin/busybox"
for a in sh ls cat id echo mount grep; do ln -s busybox "$work/root/bin/$a"; done
echo "this file lives only in the image" >"$work/root/data/readme"
truncate -s 64M "$work/root.img"
mkfs.ext4 -q -d "$work/root" "$work/root.img"
chmod 755 "$work"
chmod 666 "$work/root.img"
cp target/release/lkl-run "$work/lkl-run"
setpriv --reuid 65534 --regid 65534 --clear-groups -- "$work/lkl-run" --zpoline \
	--root "$work/root.img" /bin/sh -c \
	'echo "uid inside: $(id -u)"; ls /; cat /data/readme; grep " / " /proc/mounts; echo "written inside" > /data/new'
debugfs -R "cat /data/new" "$work/root.img" 2>/dev/null
e2fsck -fn "$work/root.img" >/dev/null 2>&1 && echo "e2fsck: clean"
