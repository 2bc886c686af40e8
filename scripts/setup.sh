#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine (as root):
# the kernel build tools, libclang for bindgen, and the real programs the
# tests run.  Safe to run again: it only installs what is missing.
set -euo pipefail

PACKAGES=(
	# kernel build
	gcc make flex bison bc libelf-dev binutils rsync patch xz-utils perl
	# bindgen
	libclang-dev
	# programs the tests and demos run
	busybox-static strace curl git python3 tar gzip coreutils iproute2 procps
	# filesystem images for the disk tests
	e2fsprogs dosfstools btrfs-progs xfsprogs mtools gdisk fdisk
	# static C test programs, and the static link of lkl-run (libc.a); sanitizer runtimes
	libc6-dev libtsan2 libasan8
	# the filesystem tools' tests and benchmarks: FUSE, xattrs, the tools we compare with
	fuse3 libfuse3-dev pkg-config attr e2tools fuse2fs
	# the networking and zpoline tests: real peers and programs
	iputils-ping iperf3 dnsmasq-base socat netcat-openbsd
	# lkl-hijack.sh's file-capability check and its test (getcap, setcap; setpriv)
	libcap2-bin util-linux
	# the zpoline tests' Go programs (goroutine stacks, go build, net/http over LKL)
	golang-go
	# the process-tree tests: a master and workers sharing LKL sockets
	nginx-light
)

need=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup: missing packages: ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
	echo "setup: cargo not found: install the Rust toolchain (rustup) first" >&2
	exit 1
fi
