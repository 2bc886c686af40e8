#!/usr/bin/env bash
# Benchmark of LKL's network path (virtio-net over a tap) beside the host
# kernel's, in one run, in network namespaces it makes: TCP throughput
# with and without offloads, 1-byte TCP request/response latency, ping
# RTT; each figure beside the host's, with the ratio.
#
# See --help. The current figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/bench-net.sh [--seconds N] [--rr N] [--pings N] [--repeat N] [--offload MASK] [--busy-poll-us N] [--stages] [--no-zpoline] [--no-build]

Builds lkl-netbench (crate lkl-netdev-test) and lkl-run (crate loader),
compiles tests/zpoline-lkl/c/treebench.c, and runs lkl-netbench as root. It makes
two network namespaces: S, with a server on host sockets, the taps of
LKL's devices and the S ends of two veth pairs; and C, with the other ends.
Then, one after another:

  LKL, offloads 0x9983   client in its own process, LKL's sockets (lkl::
                         system calls) over virtio-net on tap lklbt1
  LKL, no offloads       the same over tap lklbt0, offload mask 0
  host, offloads         the same client code on host sockets, from C over
                         a veth pair (its default offloads)
  host, no offloads      over a second veth pair with gso_max_segs 1 on
                         both ends (no segmentation offload; no ethtool
                         here to turn checksum offload off too)
  host behind a tap     the same client on host sockets from C over tap
                         lklbt3, joined to tap lklbt2 in S by a relay
                         process that copies frames both ways (offloads
                         on): the host's stack at the user end of a tap,
                         as LKL is (one copy more than LKL's path)

  LKL under lkl-run     treebench rr (a program on plain sockets) under
                         `lkl-run --zpoline`, over tap lklbt4 with the
                         same offloads, to the server's echo port: request/
                         response only, against LKL in-process

Each measures, against the server: ping RTT (median of N), TCP 1-byte
request/response (TCP_NODELAY; the best mean of 5 rounds of N/5), TCP
upload and download (64 KiB writes for N seconds). Ping and
request/response are measured in three placements: unpinned; same CPU
(server, client with all its threads, LKL's included, and the relay on
CPU 0); different CPUs (server on CPU 0, client and relay on CPU 1).
Throughput and the no-offload clients run unpinned only. The clients
take turns, placement by placement, for --repeat rounds, the best of each
figure kept. The table prints LKL, the host over the veth and the ratio,
then the host behind a tap and that ratio, and whether the latency goals
(<= 2x the veth, <= 1.3x the tap) are met; then the lkl-run figure beside
the in-process one (goal <= 1.2x). The load average is printed at the
start and the end.

  --seconds N  seconds per throughput run (default 2)
  --rr N       request/response round trips (default 3000)
  --pings N    pings (default 200)
  --repeat N   rounds: the clients take turns N times and the best
               of each figure is kept (default 3: the machine may be shared)
  --offload M  offload mask of the LKL device "with offloads" (default 0x9983)
  --busy-poll-us N
               the LKL devices' receive busy polling in µs (0: off; default:
               the library's, 200)
  --no-coalesce
               turn the LKL devices' receive coalescing off (on by default)
  --no-transmit-thread
               turn the LKL devices' transmit thread off (on by default)
  --stages     instead of the comparison: LKL's request/response round
               trip stage by stage in each placement (median us of each
               span of --rr round trips, best of --repeat runs): program
               send -> device transmit (LKL's TCP, the driver, the notify)
               -> tap written (the host's stack took the frame) -> reply
               read by the receive thread (server, reply, tap, polling)
               -> interrupt raised -> interrupt call returned (handler and
               receive softirq, when the kernel's CPU was free) -> program
               back from read (its wake-up); timestamps from
               lkl::virtio::net::trace, off in every other run
  --no-zpoline leave out the lkl-run client (no lkl-run build, no gcc,
               vm.mmap_min_addr untouched)
  --no-build   use the binaries already built
  -h, --help   this text

Needs root (namespaces, taps; vm.mmap_min_addr=0 for lkl-run, restored at
the end), iproute2 and gcc. Uses CARGO_TARGET_DIR if set, else target/.
USAGE
}

ARGS=()
BUILD=1
ZPOLINE=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --seconds|--rr|--pings|--repeat)
            [ $# -ge 2 ] || { echo "bench-net.sh: $1 needs a number" >&2; exit 2; }
            [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || { echo "bench-net.sh: $1 needs a positive number, not '$2'" >&2; exit 2; }
            ARGS+=("$1" "$2"); shift 2 ;;
        --offload)
            [ $# -ge 2 ] || { echo "bench-net.sh: --offload needs a mask" >&2; exit 2; }
            [[ "$2" =~ ^(0x[0-9a-fA-F]+|[0-9]+)$ ]] || { echo "bench-net.sh: --offload needs a mask like 0x9983, not '$2'" >&2; exit 2; }
            ARGS+=("$1" "$2"); shift 2 ;;
        --busy-poll-us)
            [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || { echo "bench-net.sh: --busy-poll-us needs a number of µs" >&2; exit 2; }
            ARGS+=("$1" "$2"); shift 2 ;;
        --no-coalesce|--no-transmit-thread|--stages) ARGS+=("$1"); shift ;;
        --no-zpoline) ZPOLINE=0; shift ;;
        --no-build) BUILD=0; shift ;;
        *) echo "bench-net.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "bench-net.sh: needs root (it makes network namespaces and taps): run it with sudo" >&2
    exit 1
fi
command -v ip >/dev/null || { echo "bench-net.sh: 'ip' is missing: install iproute2" >&2; exit 1; }

[ "$ZPOLINE" = 0 ] || command -v gcc >/dev/null || { echo "bench-net.sh: 'gcc' is missing: install gcc (or pass --no-zpoline)" >&2; exit 1; }

cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p lkl-netdev-test --bin lkl-netbench
    [ "$ZPOLINE" = 0 ] || cargo build --release -q -p loader --bin lkl-run
fi
BIN="$TARGET/release/lkl-netbench"
[ -x "$BIN" ] || { echo "bench-net.sh: $BIN is not built (drop --no-build)" >&2; exit 1; }
if [ "$ZPOLINE" = 1 ]; then
    LKL_RUN="$TARGET/release/lkl-run"
    [ -x "$LKL_RUN" ] || { echo "bench-net.sh: $LKL_RUN is not built (drop --no-build)" >&2; exit 1; }
    TMP=$(mktemp -d /tmp/bench-net.XXXXXX)
    MIN_ADDR=$(sysctl -n vm.mmap_min_addr)
    cleanup() {
        sysctl -qw vm.mmap_min_addr="$MIN_ADDR" || true
        rm -rf "$TMP"
    }
    trap cleanup EXIT
    gcc -O2 -Wall -o "$TMP/treebench" tests/zpoline-lkl/c/treebench.c
    sysctl -qw vm.mmap_min_addr=0
    ARGS+=(--lkl-run "$LKL_RUN" --treebench "$TMP/treebench")
fi
"$BIN" "${ARGS[@]}"
