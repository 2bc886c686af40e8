#!/usr/bin/env bash
# Micro-benchmark of one call with a path (and the other calls busybox tar makes per
# file) under `lkl-run --zpoline --root IMAGE`, against the same natively.
#
# See --help. The figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/bench-pathcall.sh [--calls N] [--runs N] [--rt] [--no-build]

Builds lkl-run (crate loader), compiles tests/zpoline-lkl/c/pathbench.c
statically, puts it in a fresh ext4 image (mkfs.ext4 -d), then runs, taking
turns, `pathbench N FILE` natively (FILE on the host's /tmp) and under
`lkl-run --zpoline --root IMAGE` (FILE in the image's /tmp). pathbench prints
ns per call (best of 5 rounds of N calls) for getuid, getppid, umask, fstat,
fchmod, stat, lstat, chmod, open+close and access; this script prints, per
call, the best and the median over the runs on each side, and the ratio of
the medians.

  --calls N   calls per round (default 20000)
  --runs N    runs of each side (default 5)
  --rt        run both sides under `chrt -f 50` (SCHED_FIFO), out of the way
              of other work on a shared machine
  --no-build  use the lkl-run already built
  -h, --help  this text

Needs root (vm.mmap_min_addr=0), gcc with a static libc (libc6-dev) and
e2fsprogs. Uses CARGO_TARGET_DIR if set, else target/.
USAGE
}

CALLS=20000
RUNS=5
RT=()
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --calls|--runs)
            [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || {
                echo "bench-pathcall.sh: $1 needs a positive number" >&2; exit 2; }
            if [ "$1" = --calls ]; then CALLS=$2; else RUNS=$2; fi
            shift 2 ;;
        --rt) RT=(chrt -f 50); shift ;;
        --no-build) BUILD=0; shift ;;
        *) echo "bench-pathcall.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p loader)
fi
LKL_RUN="$TARGET/lkl-run"
[ -x "$LKL_RUN" ] || { echo "bench-pathcall.sh: $LKL_RUN is missing (build it, or drop --no-build)" >&2; exit 1; }
if [ "$(sysctl -n vm.mmap_min_addr)" != 0 ]; then
    sysctl -qw vm.mmap_min_addr=0 || { echo "bench-pathcall.sh: lkl-run needs vm.mmap_min_addr=0 (run as root)" >&2; exit 1; }
fi

WORK="$(mktemp -d /var/tmp/lkl-bench-pathcall.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/img/bin" "$WORK/img/tmp"
gcc -O2 -Wall -static -o "$WORK/img/bin/pathbench" "$ROOT/tests/zpoline-lkl/c/pathbench.c"
IMG="$WORK/root.img"
truncate -s 64M "$IMG"
mkfs.ext4 -q -F -d "$WORK/img" "$IMG"

for i in $(seq "$RUNS"); do
    "${RT[@]}" "$WORK/img/bin/pathbench" "$CALLS" "$WORK/file" | sed 's/^/native /' >> "$WORK/out"
    "${RT[@]}" "$LKL_RUN" --zpoline --root "$IMG" /bin/pathbench "$CALLS" /tmp/file | sed 's/^/root /' >> "$WORK/out"
done
if grep -q error "$WORK/out"; then
    grep error "$WORK/out" >&2
    exit 1
fi
echo "ns per call, best and median of $RUNS runs (each the best of 5 rounds of $CALLS calls)"
printf '%-12s %18s %18s %8s\n' call "native best (med)" "--root best (med)" ratio
awk '{ v[$2 " " $1] = v[$2 " " $1] " " $3; if (!seen[$2]++) order[++n] = $2 }
    function stats(s,   a, k, m, i, j, t) {
        k = split(substr(s, 2), a, " ")
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        m = (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
        return a[1] " " m
    }
    END {
        for (i = 1; i <= n; i++) {
            c = order[i]
            split(stats(v[c " native"]), nat, " "); split(stats(v[c " root"]), lkl, " ")
            printf "%-12s %8d (%7d) %8d (%7d) %7.2fx\n", c, nat[1], nat[2], lkl[1], lkl[2], (nat[2] > 0 ? lkl[2] / nat[2] : 0)
        }
    }' "$WORK/out"
