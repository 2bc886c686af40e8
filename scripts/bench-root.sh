#!/usr/bin/env bash
# Benchmark of a program tree on an image, `lkl-run --zpoline --root`, against the
# same work natively, on an lklfuse mount and in gVisor, in one run: each time, the
# baseline's and the ratio.
#
#   start-up   lkl-run --root IMG /bin/true       vs  busybox true natively
#   files      untar N small files, find, du      vs  the same natively (host disk),
#              (inside the image, --root; and        on lklfuse (image mounted),
#               --mount with the tarball on the      in gVisor (runsc do), when
#               host)                                 runsc is installed
#
# See --help. The figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench-root.sh [--files N] [--runs N] [--starts N] [--mem MB]
                            [--dir DIR] [--keep] [--no-build]

Makes a tree of N small files (100 B-8 KiB, default 20000, three directories
deep) and its tarball, and an ext4 image holding busybox-static (with its
applets as links) and the tarball. Then, with every program busybox's:

  start-up: lkl-run --zpoline --root IMG /bin/true, best and median of
            --starts runs (default 20), against busybox true natively and
            runsc do busybox true
  files:    sh -c 'tar -xf TAR -C DIR && find DIR -type f | wc -l && du -sk DIR'
            under --root (the tarball and DIR in the image, a fresh image
            each run), under --mount (the tarball on the host, DIR in the
            image), natively (DIR on the host's disk, then sync: every row
            but gVisor's ends with its files on the disk), on an lklfuse mount
            of a fresh image (the unmount, which writes everything back,
            included) and under runsc do (gVisor; skipped without runsc)

Each line prints our time, the baseline's and the ratio (ours / baseline:
below 1 is faster), the best of --runs runs (default 3), the medians in
brackets. Ours and the baselines take turns.

  --files N    small files in the tree (default 20000)
  --runs N     runs of each file workload (default 3)
  --starts N   runs of each start-up (default 20)
  --mem MB     LKL's memory (boot_cmdline mem=, default 512)
  --dir DIR    work directory on the host's disk (default: a new one under
               /var/tmp, removed at the end)
  --keep       keep the work directory
  --no-build   use the binaries already in target/release
  -h, --help   this text
EOF
}

NFILES=20000
RUNS=3
STARTS=20
MEM=512
WORK=""
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --files) NFILES="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --starts) STARTS="$2"; shift 2 ;;
        --mem) MEM="$2"; shift 2 ;;
        --dir) WORK="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-root.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$NFILES" "$RUNS" "$STARTS" "$MEM"; do
    case "$v" in ''|*[!0-9]*|0) echo "bench-root.sh: --files, --runs, --starts and --mem take numbers >= 1" >&2; exit 2 ;; esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p loader -p lklfuse)
fi
LKL_RUN="$TARGET/lkl-run"
LKLFUSE="$TARGET/lklfuse"
[ -x "$LKL_RUN" ] || { echo "bench-root.sh: $LKL_RUN is missing (build it, or drop --no-build)" >&2; exit 1; }
BUSYBOX=/bin/busybox
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || {
    echo "bench-root.sh: $BUSYBOX must be busybox-static: apt-get install busybox-static" >&2; exit 1; }
if [ "$(sysctl -n vm.mmap_min_addr)" != 0 ]; then
    sysctl -qw vm.mmap_min_addr=0 || { echo "bench-root.sh: lkl-run needs vm.mmap_min_addr=0 (run as root)" >&2; exit 1; }
fi

if [ -z "$WORK" ]; then
    WORK="$(mktemp -d /var/tmp/lkl-bench-root.XXXXXX)"
else
    mkdir -p "$WORK"
fi
MNT="$WORK/fuse"
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true; }
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

CONF="$WORK/lkl.json"
printf '{"boot_cmdline": "mem=%sM"}\n' "$MEM" > "$CONF"

# The tree, its tarball and the image's source tree.
echo "making a tree of $NFILES files and the image..." >&2
python3 - "$WORK/tree" "$NFILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
block = rnd.randbytes(1 << 16)
for k in range(n):
    leaf = k // 50
    d = os.path.join(root, f"a{leaf // 100:02}", f"b{leaf // 10 % 10}", f"c{leaf % 10}")
    if k % 50 == 0:
        os.makedirs(d, exist_ok=True)
    size = rnd.randrange(100, 8 * 1024)
    off = rnd.randrange(0, len(block) - size)
    with open(os.path.join(d, f"f{k % 50:02}.txt"), "wb") as f:
        f.write(block[off:off + size])
PY
tar -cf "$WORK/tree.tar" -C "$WORK" tree
IMGSRC="$WORK/imgsrc"
mkdir -p "$IMGSRC/bin" "$IMGSRC/proc" "$IMGSRC/sys" "$IMGSRC/dev" "$IMGSRC/tmp" "$IMGSRC/data" "$IMGSRC/work"
cp "$BUSYBOX" "$IMGSRC/bin/busybox"
for a in sh true tar find wc du; do ln -s busybox "$IMGSRC/bin/$a"; done
cp "$WORK/tree.tar" "$IMGSRC/data/tree.tar"
IMG="$WORK/root.img"
fresh_image() { # image [with the tarball]
    rm -f "$1"
    truncate -s 1G "$1"
    mkfs.ext4 -q -F -d "$IMGSRC" "$1"
}

# Seconds taken by "$@" (output discarded), to 0.001 s.
timeit() {
    local t0 t1
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$WORK/last.err" || { echo "bench-root.sh: failed: $*" >&2; cat "$WORK/last.err" >&2; return 1; }
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}
best() { printf '%s\n' "$@" | sort -n | head -1; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
row() { # what ours-best ours-median base-name base-best base-median unit
    awk -v w="$1" -v o="$2" -v om="$3" -v bn="$4" -v b="$5" -v bm="$6" -v u="$7" 'BEGIN {
        k = (u == "ms") ? 1000 : 1
        printf "%-30s %8.3f %s (%.3f)  %-18s %8.3f %s (%.3f)  ratio %.2fx (%.2fx)\n",
            w, o * k, u, om * k, bn, b * k, u, bm * k, (b > 0) ? o / b : 0, (bm > 0) ? om / bm : 0 }'
}
skip() { printf "%-30s skipped: %s\n" "$1" "$2"; }

WORKLOAD='tar -xf "$1" -C "$2" && find "$2" -type f | wc -l && du -sk "$2"'
have_runsc=0
command -v runsc >/dev/null 2>&1 && have_runsc=1

# Start-up.
fresh_image "$IMG"
s_lkl=(); s_nat=(); s_gv=()
for i in $(seq "$STARTS"); do
    s_lkl+=("$(timeit "$LKL_RUN" --zpoline --config "$CONF" --root "$IMG" /bin/true)")
    s_nat+=("$(timeit "$BUSYBOX" true)")
    [ "$have_runsc" = 0 ] || s_gv+=("$(timeit runsc --rootless --network=none do "$BUSYBOX" true)")
done
echo "start-up (/bin/true, best of $STARTS, median in brackets)"
row "lkl-run --root" "$(best "${s_lkl[@]}")" "$(median "${s_lkl[@]}")" "native" "$(best "${s_nat[@]}")" "$(median "${s_nat[@]}")" ms
if [ "$have_runsc" = 1 ]; then
    row "lkl-run --root" "$(best "${s_lkl[@]}")" "$(median "${s_lkl[@]}")" "gVisor (runsc do)" "$(best "${s_gv[@]}")" "$(median "${s_gv[@]}")" ms
else
    skip "gVisor start-up" "runsc is not installed (Debian: apt-get install runsc, from bookworm-backports or gVisor's repository)"
fi

# The file workload.
root_run() { "$LKL_RUN" --zpoline --config "$CONF" --root "$IMG" /bin/sh -c "$WORKLOAD" sh /data/tree.tar /work; }
mount_run() { "$LKL_RUN" --zpoline --config "$CONF" --mount "$IMG:/mnt/bench" "$BUSYBOX" sh -c "$WORKLOAD" sh "$WORK/tree.tar" /mnt/bench/work; }
# Every row ends with its files on the disk: lkl-run writes its images back when the
# tree ends, lklfuse at its unmount, the native run with sync.
native_run() { rm -rf "$WORK/native"; mkdir -p "$WORK/native"; "$BUSYBOX" sh -c "$WORKLOAD && sync" sh "$WORK/tree.tar" "$WORK/native"; }
fuse_run() {
    mkdir -p "$MNT"
    "$LKLFUSE" "$IMG" "$MNT"
    "$BUSYBOX" sh -c "$WORKLOAD" sh "$WORK/tree.tar" "$MNT/work"
    fusermount3 -u "$MNT"
}
gvisor_run() { runsc --rootless --network=none do "$BUSYBOX" sh -c "mkdir -p /tmp/gv-work && $WORKLOAD" sh "$WORK/tree.tar" /tmp/gv-work; }

t_root=(); t_mount=(); t_nat=(); t_fuse=(); t_gv=()
have_fuse=0
[ -x "$LKLFUSE" ] && [ -e /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1 && have_fuse=1
for i in $(seq "$RUNS"); do
    fresh_image "$IMG"; t_root+=("$(timeit root_run)")
    fresh_image "$IMG"; t_mount+=("$(timeit mount_run)")
    t_nat+=("$(timeit native_run)")
    if [ "$have_fuse" = 1 ]; then fresh_image "$IMG"; t_fuse+=("$(timeit fuse_run)"); fi
    [ "$have_runsc" = 0 ] || t_gv+=("$(timeit gvisor_run)")
done
echo "untar $NFILES files, find, du (best of $RUNS, median in brackets)"
row "lkl-run --root" "$(best "${t_root[@]}")" "$(median "${t_root[@]}")" "native" "$(best "${t_nat[@]}")" "$(median "${t_nat[@]}")" s
row "lkl-run --mount" "$(best "${t_mount[@]}")" "$(median "${t_mount[@]}")" "native" "$(best "${t_nat[@]}")" "$(median "${t_nat[@]}")" s
if [ "$have_fuse" = 1 ]; then
    row "lkl-run --root" "$(best "${t_root[@]}")" "$(median "${t_root[@]}")" "lklfuse" "$(best "${t_fuse[@]}")" "$(median "${t_fuse[@]}")" s
else
    skip "lklfuse" "needs target/release/lklfuse, /dev/fuse and fusermount3"
fi
if [ "$have_runsc" = 1 ]; then
    row "lkl-run --root" "$(best "${t_root[@]}")" "$(median "${t_root[@]}")" "gVisor (runsc do)" "$(best "${t_gv[@]}")" "$(median "${t_gv[@]}")" s
else
    skip "gVisor" "runsc is not installed"
fi
