#!/usr/bin/env bash
# Benchmark of LKL shared by a process tree under `lkl-run --zpoline`, beside
# its baselines, in one run, in a network namespace it makes: ns per
# getsockname(2) on an LKL UDP socket in the first process and in a forked
# child, against the host kernel's and gVisor's; TCP 1-byte
# request/response from a forked child over LKL's tap against the host
# kernel's over a veth pair; start-up of
# `lkl-run --zpoline /bin/true` with an LKL configuration against native.
#
# See --help. The figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/bench-tree.sh [--calls N] [--runs N] [--no-build]

Builds lkl-run (crate loader) and compiles tests/zpoline-lkl/c/treebench.c,
makes a network namespace with a tap for LKL (LKL at 198.18.0.2/24, the
host side 198.18.0.1) and an LKL configuration naming it, then measures:

  getsockname, native          treebench gsn on the host kernel (in the
                               namespace): the baseline
  getsockname, first process   the same under lkl-run --zpoline: the
                               socket is LKL's, in the process lkl-run started
  getsockname, forked child    under lkl-run, in a child forked by that
                               process, which opens its own socket after the
                               fork (the tree's one kernel, reached from
                               another process)
  getsockname, gVisor          under `runsc --rootless --network=none do`
                               (--platform=ptrace unless RUNSC_PLATFORM is
                               set; RUNSC names another runsc), if runsc is
                               installed (Debian: apt-get install runsc);
                               else "not installed" and the figure recorded
                               in docs/benchmarks.md
  request/response, forked     us per TCP 1-byte round trip (TCP_NODELAY,
                               best of 5 rounds of N/20) made by a child
                               forked by the process lkl-run started, to an
                               echo server in the namespace over LKL's tap;
                               the baseline is the same forked client on the
                               host kernel in a second namespace, over a veth
                               pair to the same server
  start-up                     N runs of `lkl-run --zpoline --config CONF
                               /bin/true` (boots LKL, attaches the tap)
                               against N runs of native /bin/true: minimum
                               and median wall time

Each getsockname figure is the best of 5 rounds of N calls; each prints
beside the native one with the ratio.

  --calls N   getsockname calls per round (default 200000; gVisor gets N/20)
  --runs N    start-up runs of each (default 50)
  --no-build  use the lkl-run already built
  -h, --help  this text

Needs root (namespace, tap, vm.mmap_min_addr=0, restored at the end),
iproute2 and gcc. Uses CARGO_TARGET_DIR if set, else target/.
USAGE
}

CALLS=200000
RUNS=50
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --calls|--runs)
            [ $# -ge 2 ] || { echo "bench-tree.sh: $1 needs a number" >&2; exit 2; }
            [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || { echo "bench-tree.sh: $1 needs a positive number, not '$2'" >&2; exit 2; }
            if [ "$1" = --calls ]; then CALLS=$2; else RUNS=$2; fi
            shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "bench-tree.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "bench-tree.sh: needs root (it makes a network namespace and a tap): run it with sudo" >&2
    exit 1
fi
command -v ip >/dev/null || { echo "bench-tree.sh: 'ip' is missing: install iproute2" >&2; exit 1; }
command -v gcc >/dev/null || { echo "bench-tree.sh: 'gcc' is missing: install gcc" >&2; exit 1; }

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p loader --bin lkl-run
fi
LKL_RUN="$TARGET/release/lkl-run"
[ -x "$LKL_RUN" ] || { echo "bench-tree.sh: $LKL_RUN is not built (drop --no-build)" >&2; exit 1; }

NS="lkltb-$$"
TAP="tbtap$$"
TMP=$(mktemp -d /tmp/bench-tree.XXXXXX)
MIN_ADDR=$(sysctl -n vm.mmap_min_addr)
cleanup() {
    [ -z "${ECHO_PID:-}" ] || kill "$ECHO_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NS2" 2>/dev/null || true
    sysctl -qw vm.mmap_min_addr="$MIN_ADDR" || true
    rm -rf "$TMP"
}
trap cleanup EXIT
sysctl -qw vm.mmap_min_addr=0

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add 198.18.0.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" up
# The veth baseline: a client namespace joined to the server's by a veth pair.
NS2="lkltbc-$$"
ip netns add "$NS2"
ip -n "$NS2" link set lo up
ip -n "$NS" link add "tbv$$" type veth peer name "tbw$$" netns "$NS2"
ip -n "$NS" addr add 198.19.0.1/24 dev "tbv$$"
ip -n "$NS2" addr add 198.19.0.2/24 dev "tbw$$"
ip -n "$NS" link set "tbv$$" up
ip -n "$NS2" link set "tbw$$" up
CONF="$TMP/conf.json"
cat >"$CONF" <<EOF
{"interfaces": [{"type": "tap", "param": "$TAP", "ip": "198.18.0.2", "masklen": "24"}]}
EOF

TB="$TMP/treebench"
gcc -O2 -Wall -o "$TB" tests/zpoline-lkl/c/treebench.c

# figure NAME COMMAND...: the value treebench printed for NAME, or "error: ..."
figure() {
    local name=$1 out
    shift
    out=$("$@" 2>&1) || true
    local line
    line=$(printf '%s\n' "$out" | grep -E "^$name " | tail -1)
    case "$line" in
        "$name error "*) echo "error: ${line#"$name error "}" ;;
        "$name "*) echo "${line#"$name "}" ;;
        *) echo "error: $(printf '%s' "$out" | tail -1)" ;;
    esac
}

in_ns() { ip netns exec "$NS" "$@"; }
lkl() { in_ns "$LKL_RUN" --zpoline --config "$CONF" "$@"; }

NATIVE=$(figure gsn in_ns "$TB" gsn "$CALLS")
FIRST=$(figure gsn lkl "$TB" gsn "$CALLS")
CHILD=$(figure gsn-fork lkl "$TB" gsn-fork "$CALLS")
RUNSC=${RUNSC:-runsc}
if command -v "$RUNSC" >/dev/null; then
    # gVisor costs microseconds per call: fewer calls. Its output is read from a
    # file (runsc's own terminal handling garbles a pipe's).
    "$RUNSC" --rootless --network=none --platform="${RUNSC_PLATFORM:-ptrace}" do \
        "$TB" gsn $((CALLS / 20 > 0 ? CALLS / 20 : 1)) >"$TMP/gvisor.out" 2>"$TMP/gvisor.err" || true
    GVISOR=$(figure gsn cat "$TMP/gvisor.out")
    case "$GVISOR" in error:*) GVISOR="error: $(tail -1 "$TMP/gvisor.err")" ;; esac
else
    GVISOR="not installed"
fi
RR_PORT=7701
ip netns exec "$NS" "$TB" echo "$RR_PORT" >"$TMP/echo.out" 2>&1 &
ECHO_PID=$! # ip netns exec execs the server: this is its pid
for _ in $(seq 50); do grep -q '^echo ready' "$TMP/echo.out" && break; sleep 0.1; done
RR_CALLS=$((CALLS / 20 > 0 ? CALLS / 20 : 1))
RR_NATIVE=$(figure rr-fork ip netns exec "$NS2" "$TB" rr-fork 198.19.0.1 "$RR_PORT" "$RR_CALLS")
RR_LKL=$(figure rr-fork lkl "$TB" rr-fork 198.18.0.1 "$RR_PORT" "$RR_CALLS")
START_NATIVE=$(figure spawn "$TB" spawn "$RUNS" /bin/true)
START_LKL=$(figure spawn in_ns "$TB" spawn "$RUNS" "$LKL_RUN" --zpoline --config "$CONF" /bin/true)

# ratio A B: A/B to two places, or "-" when either is not a number.
ratio() {
    if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3g", a / b; else print "-" }'
    else
        echo "-"
    fi
}
row() { printf '%-46s %-22s %-22s %s\n' "$1" "$2" "$3" "$4"; }
ns() { [[ "$1" =~ ^[0-9.]+$ ]] && echo "$1 ns" || echo "$1"; }

echo "bench-tree: $CALLS getsockname calls x 5 rounds (best), $RR_CALLS round trips x 5 rounds (best), $RUNS start-up runs; load $(cut -d' ' -f1-3 /proc/loadavg)"
row "figure" "ours" "baseline" "ratio"
row "getsockname, first process" "$(ns "$FIRST")" "native $(ns "$NATIVE")" "$(ratio "$FIRST" "$NATIVE")"
row "getsockname, forked child (own socket)" "$(ns "$CHILD")" "native $(ns "$NATIVE")" "$(ratio "$CHILD" "$NATIVE")"
if [ "$GVISOR" = "not installed" ]; then
    recorded=$(grep -E '^\| `getsockname`, gVisor \| [0-9.]+ ns' docs/benchmarks.md | head -1 | cut -d'|' -f3 | xargs || true)
    row "getsockname, gVisor (runsc)" "gVisor: not installed" "recorded: ${recorded:-none}" "-"
else
    row "getsockname, gVisor (runsc)" "$(ns "$GVISOR")" "native $(ns "$NATIVE")" "$(ratio "$GVISOR" "$NATIVE")"
    row "getsockname, first process vs gVisor" "$(ns "$FIRST")" "gVisor $(ns "$GVISOR")" "$(ratio "$FIRST" "$GVISOR")"
fi
us() { [[ "$1" =~ ^[0-9.]+$ ]] && echo "$1 us" || echo "$1"; }
row "TCP 1-byte request/response, forked child" "$(us "$RR_LKL")" "veth $(us "$RR_NATIVE")" "$(ratio "$RR_LKL" "$RR_NATIVE")"
# spawn figures are "MIN MEDIAN" in ms.
med() { [[ "$1" =~ ^[0-9.]+\ [0-9.]+$ ]] && echo "${1#* }" || echo "$1"; }
ms() { [[ "$1" =~ ^[0-9.]+\ [0-9.]+$ ]] && echo "${1% *} / ${1#* } ms" || echo "$1"; }
row "start-up /bin/true (min / median)" "$(ms "$START_LKL")" "native $(ms "$START_NATIVE")" "$(ratio "$(med "$START_LKL")" "$(med "$START_NATIVE")") (median)"
