#!/usr/bin/env bash
# Benchmark of host directories inside LKL (lkl-run --zpoline --volume) against
# the same work done natively, and for the untar against lklfuse, in one run:
# each time and the ratio.
#
#   read a 400 MiB file   lkl-run --volume DIR:/v cat /v/big   vs  cat DIR/big
#                         (and the same file on an ext4 image through --mount)
#   untar 20 000 files    lkl-run --volume DIR:/v tar -xf      vs  tar -xf natively
#                                                              and onto lklfuse
#   and the FUSE requests of one more untar onto the volume, per opcode.
#
# See --help. The current figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench-volume.sh [--size MB] [--files N] [--runs N] [--no-build]

Times, each the best of N runs (default 3) with the median in brackets, ours
and the baseline taking turns; lkl-run's times include its start-up (boot of
LKL, the volume's mount) and its end:

  lkl-run --zpoline --volume D:/v cat /v/big      vs  cat D/big  (MB MiB, default 400,
                                                      in the host's page cache)
  lkl-run --zpoline --mount IMG:/d:ro cat /d/big  (the same file on ext4, for reference)
  lkl-run --zpoline --volume D:/v tar -xf T -C /v vs  tar -xf T -C D natively,
                                                      and onto an ext4 image mounted
                                                      by lklfuse (if built, with /dev/fuse)
  lkl-run --zpoline --mount IMG:/d tar -xf T -C /d (onto an ext4 image, for reference:
                                                      the interposer's share)
  (T: N files of 100 B-8 KiB three directories deep, default 20000)
  then one more untar onto the volume with LKL_VOLUME_STATS=1: its FUSE
  requests per opcode and per file; the load average at the start and the end.
  The host's ext4 makes new inodes slowly for a few minutes after many were
  deleted (as this script does when it ends): wait that long between runs.

  --size MB    the large file's size (default 400)
  --files N    the small files (default 20000)
  --runs N     best of N runs (default 3)
  --no-build   use the binaries already built
  -h, --help   this text
EOF
}

SIZE=400
NFILES=20000
RUNS=3
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE="$2"; shift 2 ;;
        --files) NFILES="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-volume.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$SIZE" "$NFILES" "$RUNS"; do
    case "$n" in ''|*[!0-9]*|0) echo "bench-volume.sh: --size, --files and --runs take a number >= 1" >&2; exit 2 ;; esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p loader)
    (cd "$ROOT" && cargo build --release -q -p lklfuse 2>/dev/null) || true
fi
LKL_RUN="$BIN/lkl-run"
[ -x "$LKL_RUN" ] || { echo "bench-volume.sh: $LKL_RUN is missing (build it, or drop --no-build)" >&2; exit 1; }
sysctl -qw vm.mmap_min_addr=0 2>/dev/null || true

WORK="$(mktemp -d /tmp/lkl-bench-volume.XXXXXX)"
MNT="$WORK/fuse"
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

# Seconds a command takes (output discarded), after a sync.
secs() {
    sync
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$WORK/err" || { echo "bench-volume.sh: failed: $*" >&2; cat "$WORK/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# "measure NAME CMD..." runs CMD once per call and appends its time to $WORK/NAME.
measure() { local n="$1"; shift; secs "$@" >>"$WORK/$n.t"; echo >>"$WORK/$n.t"; }
# Best and median of the times of NAME: "BEST MEDIAN".
stats() { sort -n "$WORK/$1.t" | awk 'NF { v[++n] = $1 } END {
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.2f %.2f", v[1], m }'; }
line() { # what ours-name base-what base-name
    local o b
    read -r o om <<<"$(stats "$2")"
    read -r b bm <<<"$(stats "$4")"
    awk -v w="$1" -v o="$o" -v om="$om" -v bw="$3" -v b="$b" -v bm="$bm" 'BEGIN {
        printf "%-30s %6.2f s (%.2f)   %-22s %6.2f s (%.2f)   ratio %.2fx (%.2fx)\n",
            w, o, om, bw, b, bm, (b > 0 ? o / b : 0), (bm > 0 ? om / bm : 0) }'
}

# The machine's load, printed at the start and the end: the figures mean little
# without it on a shared machine.
load() { echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"; }
load
echo "== making a $SIZE MiB file and a tarball of $NFILES small files in $WORK"
mkdir -p "$WORK/vol"
head -c "$((SIZE << 20))" /dev/urandom >"$WORK/vol/big"
python3 - "$WORK/tree" "$NFILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"a{i % 10}", f"b{i % 100}", f"c{i % 1000}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(100, 8192)))
EOF
tar -cf "$WORK/small.tar" -C "$WORK/tree" .
rm -rf "$WORK/tree"
IMG="$WORK/big.img"
truncate -s "$((SIZE + SIZE / 4 + 64))M" "$IMG"
mkfs.ext4 -q -F -d "$WORK/vol" "$IMG"
cat "$WORK/vol/big" "$WORK/small.tar" >/dev/null

echo "== read $SIZE MiB"
for _ in $(seq "$RUNS"); do
    measure vol_read "$LKL_RUN" --zpoline --volume "$WORK/vol:/v" cat /v/big
    measure native_read cat "$WORK/vol/big"
    measure disk_read "$LKL_RUN" --zpoline --mount "$IMG:/d:ro" cat /d/big
done
line "lkl-run --volume cat" vol_read "native cat" native_read
line "lkl-run --mount (ext4) cat" disk_read "native cat" native_read

echo "== untar $NFILES files"
untar_native() { local d; d=$(mktemp -d "$WORK/n.XXXX"); tar -xf "$WORK/small.tar" -C "$d"; }
untar_volume() {
    local d; d=$(mktemp -d "$WORK/v.XXXX")
    "$LKL_RUN" --zpoline --volume "$d:/v" tar -xf "$WORK/small.tar" -C /v
}
LKLFUSE="$BIN/lklfuse"
fuse=0
if [ -x "$LKLFUSE" ] && [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then fuse=1; fi
# A fresh image for each lklfuse run, made before the clock starts.
fuse_image() { rm -f "$WORK/fuse.img"; truncate -s 2G "$WORK/fuse.img"; mkfs.ext4 -q -F "$WORK/fuse.img"; }
untar_lklfuse() {
    local img="$WORK/fuse.img"
    mkdir -p "$MNT"
    "$LKLFUSE" -f "$img" "$MNT" -o type=ext4 >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.02; done
    tar -xf "$WORK/small.tar" -C "$MNT" && sync -f "$MNT"
    fusermount3 -u "$MNT"
    wait "$pid"
}
untar_disk() {
    "$LKL_RUN" --zpoline --mount "$WORK/untar.img:/d" tar -xf "$WORK/small.tar" -C /d
}
disk_image() { rm -f "$WORK/untar.img"; truncate -s 2G "$WORK/untar.img"; mkfs.ext4 -q -F "$WORK/untar.img"; }
for _ in $(seq "$RUNS"); do
    measure vol_untar untar_volume
    disk_image; measure disk_untar untar_disk
    measure native_untar untar_native
    if [ "$fuse" = 1 ]; then fuse_image; measure fuse_untar untar_lklfuse; fi
done
# The untarred trees stay until the end: on an ext4 without a journal, making an
# inode near many deleted in the last minutes scans for them (recently_deleted),
# so deleting one round's trees would slow whichever untar comes next.
line "lkl-run --volume tar -xf" vol_untar "native tar -xf" native_untar
line "lkl-run --mount (ext4) tar" disk_untar "native tar -xf" native_untar
if [ "$fuse" = 1 ]; then
    line "lkl-run --volume tar -xf" vol_untar "lklfuse tar -xf" fuse_untar
else
    echo "lklfuse row skipped: needs $LKLFUSE (cargo build --release -p lklfuse), /dev/fuse and fusermount3"
fi
# The FUSE requests of one more untar onto the volume, per opcode (LKL_VOLUME_STATS).
echo "== FUSE requests of one untar onto the volume (LKL_VOLUME_STATS=1)"
d=$(mktemp -d "$WORK/v.XXXX")
LKL_VOLUME_STATS=1 "$LKL_RUN" --zpoline --volume "$d:/v" tar -xf "$WORK/small.tar" -C /v 2>"$WORK/stats" >/dev/null ||
    { echo "bench-volume.sh: failed: untar with LKL_VOLUME_STATS=1" >&2; cat "$WORK/stats" >&2; exit 1; }
sed 's/^lkl: *//' "$WORK/stats"
awk -v n="$NFILES" '/ requests, / { for (i = 1; i <= NF; i++) if ($(i + 1) == "requests,") r = $i }
    END { if (r) printf "%.1f requests per file\n", r / n }' "$WORK/stats"
rm -rf "$d"
load
