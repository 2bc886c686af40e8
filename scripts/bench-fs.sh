#!/usr/bin/env bash
# Benchmark of the file system tools against the tools people use today,
# on a mixed tree and on a tree of many small files, in one run: each
# time and the ratio.
#
#   cptofs into ext4     vs  mkfs.ext4 -d (the floor), e2cp, fuse2fs + cp -a
#   fs2tar of the image  vs  GNU tar of the same tree from the host disk
#   lklfuse              vs  fuse2fs: sequential write and read of one big
#                            file, untar of many small files
#
# See --help. The current figures are in docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench-fs.sh [--tree mixed|small|both] [--size MB] [--files N]
                          [--runs N] [--dir DIR] [--keep] [--no-build]

Builds fs2tar, cptofs (and lklfuse if it is built) and makes two trees:
the mixed tree of about MB megabytes (default 1024: ~60% in small files
of 1-64 KiB in nested directories, ~40% in four large files), and the
small-files tree (N files of 100 B-8 KiB, default 20000, three
directories deep, plus two 100 MiB files), where per-file costs
dominate. On each it times:

  cptofs -i ext4.img TREE/. /   vs  mkfs.ext4 -d TREE, e2cp, fuse2fs+cp -a
  fs2tar ext4.img OUT.tar       vs  tar -cf OUT.tar -C TREE .
  lklfuse vs fuse2fs            write/read of one MB-sized file (mixed tree
                                only), untar of the tree, and (small-files
                                tree) tar -c of the untarred copies

Each line prints our time, the baseline's time and the ratio (ours /
baseline: below 1 is faster) and the median of the N runs beside it
in brackets. Each time is the best of N runs (default
3; e2cp, which is slow, runs once), ours and the baseline's taking turns
so that a slow spell hits both: on a shared machine the best run is
the one least disturbed by other load. Every image is made fresh (mkfs time is
included on both sides of the cptofs comparison). Baselines whose tool is
missing, or FUSE rows without /dev/fuse or lklfuse, print why they are
skipped.

  --tree T     which trees: mixed, small or both (default both)
  --size MB    mixed tree size in MiB (default 1024; 200 for a quick run)
  --files N    small files in the small-files tree (default 20000)
  --runs N     best of N runs per time (default 3)
  --dir DIR    work directory (default: a new one under /tmp, removed at the end)
  --keep       keep the work directory
  --no-build   use the binaries already in target/release
  -h, --help   this text
EOF
}

SIZE=1024
NFILES=20000
TREES=both
WORK=""
KEEP=0
BUILD=1
RUNS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --tree) TREES="$2"; shift 2 ;;
        --size) SIZE="$2"; shift 2 ;;
        --files) NFILES="$2"; shift 2 ;;
        --dir) WORK="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-fs.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$SIZE" in ''|*[!0-9]*) echo "bench-fs.sh: --size takes a number of MiB" >&2; exit 2 ;; esac
case "$NFILES" in ''|*[!0-9]*|0) echo "bench-fs.sh: --files takes a number >= 1" >&2; exit 2 ;; esac
case "$TREES" in mixed|small|both) ;; *) echo "bench-fs.sh: --tree takes mixed, small or both" >&2; exit 2 ;; esac
case "$RUNS" in ''|*[!0-9]*|0) echo "bench-fs.sh: --runs takes a number >= 1" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p fs2tar -p cptofs)
    (cd "$ROOT" && cargo build --release -q -p lklfuse 2>/dev/null) || true
fi
for b in fs2tar cptofs; do
    [ -x "$TARGET/$b" ] || { echo "bench-fs.sh: $TARGET/$b is missing (build it, or drop --no-build)" >&2; exit 1; }
done

if [ -z "$WORK" ]; then
    WORK="$(mktemp -d /tmp/lkl-bench-fs.XXXXXX)"
else
    mkdir -p "$WORK"
fi
MNT1="$WORK/mnt-a"
MNT2="$WORK/mnt-b"
cleanup() {
    for m in "$MNT1" "$MNT2"; do
        mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
    done
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/sbin/$1" ] || [ -x "/usr/sbin/$1" ]; }

# Seconds taken by a command (its output discarded), to 0.01 s. Before the
# clock starts, the files named in $FRESH are removed and everything is
# synced, so that no run pays for the previous run's output (freeing a
# 1 GiB file it overwrites, or its write-back) and each starts alike.
FRESH=""
timeit() {
    local t0 t1
    [ -z "$FRESH" ] || rm -f $FRESH
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$WORK/last.err" || { echo "bench-fs.sh: failed: $*" >&2; cat "$WORK/last.err" >&2; return 1; }
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }'
}

# The lower of two times, the second possibly empty (no run yet).
lower() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

# The median of a list of times (the mean of the middle two for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The best of $RUNS runs of each of two commands, taking turns (ours, the
# baseline, ours, ...), so that a slow spell of the machine hits both:
# "best_pair FN_A FRESH_A FN_B FRESH_B" prints "A B MEDIAN_A MEDIAN_B",
# each FN a command (a function) and each FRESH what to remove before its
# runs (see timeit).
best_pair() {
    local ba="" bb="" ta=() tb=() t i
    for i in $(seq "$RUNS"); do
        t=$(FRESH="$2" timeit "$1") || return 1
        ba=$(lower "$t" "$ba"); ta+=("$t")
        t=$(FRESH="$4" timeit "$3") || return 1
        bb=$(lower "$t" "$bb"); tb+=("$t")
    done
    echo "$ba $bb $(median "${ta[@]}") $(median "${tb[@]}")"
}

# The best of $RUNS runs of timeit, and their median: "BEST MEDIAN".
best() {
    local b="" ts=() t i
    for i in $(seq "$RUNS"); do
        t=$(timeit "$@") || return 1
        b=$(lower "$t" "$b"); ts+=("$t")
    done
    echo "$b $(median "${ts[@]}")"
}

row() { # what ours base-name base [ours-median base-median]
    awk -v w="$1" -v o="$2" -v bn="$3" -v b="$4" -v om="${5:-$2}" -v bm="${6:-$4}" 'BEGIN {
        r = (b > 0) ? o / b : 0; rm = (bm > 0) ? om / bm : 0
        printf "%-34s %6.2f s (%.2f)   %-20s %6.2f s (%.2f)   ratio %.2fx (%.2fx)\n", w, o, om, bn, b, bm, r, rm }'
}
skip() { printf "%-34s skipped: %s\n" "$1" "$2"; }

# Makes the tree of KIND (mixed or small) in DIR.
make_tree() { # kind dir
    python3 - "$1" "$2" "$SIZE" "$NFILES" <<'PY'
import os, random, sys
kind, root, size, nfiles = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20, int(sys.argv[4])
rnd = random.Random(42)
os.makedirs(root, exist_ok=True)
block = rnd.randbytes(1 << 20)
def fill(path, n):
    with open(path, "wb") as f:
        while n > 0:
            k = min(n, len(block))
            off = rnd.randrange(0, len(block) - k + 1)
            f.write(block[off:off + k]); n -= k
if kind == "mixed":
    small_budget = size * 6 // 10
    big = (size - small_budget) // 4
    for i in range(4):
        fill(os.path.join(root, f"large{i}.bin"), big)
    done, d = 0, 0
    while done < small_budget:
        sub = os.path.join(root, f"d{d // 100:03}", f"s{d % 100:02}")
        os.makedirs(sub, exist_ok=True)
        for j in range(100):
            n = rnd.randrange(1024, 64 * 1024)
            fill(os.path.join(sub, f"f{j:03}.dat"), n)
            done += n
        d += 1
else:
    # Three levels of directories, 50 files in each leaf.
    for i in range(2):
        fill(os.path.join(root, f"large{i}.bin"), 100 << 20)
    for k in range(nfiles):
        leaf = k // 50
        sub = os.path.join(root, f"a{leaf // 100:02}", f"b{leaf // 10 % 10}", f"c{leaf % 10}")
        if k % 50 == 0:
            os.makedirs(sub, exist_ok=True)
        fill(os.path.join(sub, f"f{k % 50:02}.txt"), rnd.randrange(100, 8 * 1024))
PY
}

# Every comparison on the tree of KIND, in $WORK/KIND.
bench_tree() { # kind
    local kind="$1" D="$WORK/$1"
    local TREE="$D/tree"
    mkdir -p "$D"
    if [ "$kind" = mixed ]; then
        echo "== making a ${SIZE} MiB mixed tree in $TREE"
    else
        echo "== making a tree of $NFILES small files (100 B-8 KiB) and two 100 MiB files in $TREE"
    fi
    make_tree "$kind" "$TREE"
    local FILES BYTES IMGSIZE
    FILES=$(find "$TREE" -type f | wc -l)
    BYTES=$(du -sm --apparent-size "$TREE" | cut -f1)
    # Room for the data and, in the small-files tree, for an inode per file
    # (ext4 makes one inode per 16 KiB).
    local INODES=0
    [ "$kind" = mixed ] || INODES=$(( FILES / 32 ))
    IMGSIZE=$(( BYTES * 3 / 2 + INODES + 256 ))M
    echo "   $FILES files, $BYTES MiB; images of $IMGSIZE"
    sync

    echo "== cptofs into ext4 ($kind tree)"
    A="$D/a.img"; B="$D/b.img"
    mk_empty() { rm -f "$1"; truncate -s "$IMGSIZE" "$1"; mkfs.ext4 -q -F "$1"; }
    mkfs_d() { rm -f "$B"; truncate -s "$IMGSIZE" "$B"; mkfs.ext4 -q -F -d "$TREE" "$B"; }
    mkfs_cptofs() { rm -f "$A"; truncate -s "$IMGSIZE" "$A"; mkfs.ext4 -q -F "$A"; "$TARGET/cptofs" -q -i "$A" -t ext4 "$TREE/." /; }
    local T_CP T_MKFS M_CP M_MKFS
    read -r T_CP T_MKFS M_CP M_MKFS < <(best_pair mkfs_cptofs "" mkfs_d "")
    row "cptofs (mkfs + copy)" "$T_CP" "mkfs.ext4 -d" "$T_MKFS" "$M_CP" "$M_MKFS"
    if have e2cp && have e2mkdir; then
        E="$D/e.img"
        e2copy() {
            mk_empty "$E"
            (cd "$TREE" && find . -mindepth 1 -type d | sed 's|^\./||' | sort | while read -r d; do e2mkdir "$E:/$d"; done)
            (cd "$TREE" && find . -type d | sort | while read -r d; do
                files=$(find "$d" -maxdepth 1 -type f | sort)
                [ -n "$files" ] && e2cp -p $files "$E:/${d#./}"
            done)
        }
        local T_E2
        T_E2=$(timeit e2copy)
        row "cptofs (mkfs + copy)" "$T_CP" "e2mkdir + e2cp -p" "$T_E2" "$M_CP" "$T_E2"
    else
        skip "e2cp" "e2tools not installed (apt-get install e2tools)"
    fi
    if have fuse2fs && [ -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
        F="$D/f.img"
        fusecopy() {
            mk_empty "$F"; mkdir -p "$MNT2"
            fuse2fs -o fakeroot "$F" "$MNT2" >/dev/null
            cp -a "$TREE/." "$MNT2/"
            fusermount3 -u "$MNT2" 2>/dev/null || umount "$MNT2"
        }
        local T_F2 M_F2
        read -r T_F2 M_F2 < <(best fusecopy)
        row "cptofs (mkfs + copy)" "$T_CP" "fuse2fs + cp -a" "$T_F2" "$M_CP" "$M_F2"
    else
        skip "fuse2fs + cp -a" "needs fuse2fs, /dev/fuse and root"
    fi

    echo "== fs2tar ($kind tree)"
    # Both inputs in the host's page cache: the tree (a warm-up tar) and the
    # image (read once). The image was written minutes earlier; this host may
    # reclaim pages that went cold meanwhile (kdamond runs here), and one run
    # of fs2tar reading its image from disk took 2.63 s against GNU tar's 1.06.
    tar -cf "$D/warm.tar" -C "$TREE" . ; rm -f "$D/warm.tar"
    cat "$A" >/dev/null
    gnu_tar() { tar -cf "$D/host.tar" -C "$TREE" .; }
    our_fs2tar() { "$TARGET/fs2tar" -t ext4 "$A" "$D/lkl.tar"; }
    local T_F2T T_TAR M_F2T M_TAR
    read -r T_F2T T_TAR M_F2T M_TAR < <(best_pair our_fs2tar "$D/lkl.tar" gnu_tar "$D/host.tar")
    row "fs2tar ext4.img" "$T_F2T" "GNU tar of the tree" "$T_TAR" "$M_F2T" "$M_TAR"
    # The untar below needs the host's archive.
    gnu_tar

    echo "== lklfuse vs fuse2fs ($kind tree)"
    LKLFUSE="$TARGET/lklfuse"
    if ! [ -x "$LKLFUSE" ] || "$LKLFUSE" --help 2>&1 | grep -q "not built yet"; then
        skip "lklfuse" "lklfuse is missing (cargo build --release -p lklfuse)"
    elif ! have fuse2fs || ! [ -e /dev/fuse ]; then
        skip "lklfuse" "needs fuse2fs and /dev/fuse"
    else
        BIG=$(( SIZE < 1024 ? SIZE : 1024 ))
        fuse_run() { # tool img mnt op
            local tool="$1" img="$2" m="$3" op="$4"
            mkdir -p "$m"
            local lpid
            # Both in the foreground, so that their end (the image flushed
            # and closed) can be waited for: fusermount3 -u returns before
            # that.
            if [ "$tool" = lklfuse ]; then
                "$LKLFUSE" -f "$img" "$m" -o type=ext4 >/dev/null 2>&1 &
            else
                fuse2fs -f -o fakeroot "$img" "$m" >/dev/null 2>&1 &
            fi
            lpid=$!
            for _ in $(seq 200); do mountpoint -q "$m" && break; sleep 0.02; done
            # A run whose mount is missing or whose work fails must not
            # count (it would have written to the host's directory).
            mountpoint -q "$m" || { echo "$tool did not mount $img on $m" >&2; return 1; }
            local ok=0
            case "$op" in
                write) dd if=/dev/zero of="$m/big" bs=1M count="$BIG" conv=fsync status=none || ok=1 ;;
                read) dd if="$m/big" of=/dev/null bs=1M status=none || ok=1 ;;
                untar) local d; d=$(mktemp -d "$m/untar.XXXXXX"); { tar -xf "$D/host.tar" -C "$d" && sync -f "$m"; } || ok=1 ;;
                readback) tar -cf - -C "$m" . | cat >/dev/null || ok=1 ;;
            esac
            fusermount3 -u "$m" 2>/dev/null || umount "$m"
            wait "$lpid"
            [ "$ok" = 0 ] || { echo "$tool: $op failed on $img" >&2; return 1; }
        }
        # Room for the big file and one untar per run, with an inode per file.
        local FUSESIZE ops
        FUSESIZE=$(( (BYTES + INODES) * (RUNS + 1) + BIG + 512 ))M
        for i in l u; do rm -f "$D/$i.img"; truncate -s "$FUSESIZE" "$D/$i.img"; mkfs.ext4 -q -F "$D/$i.img"; done
        # The small-files tree: the untar, then a read-back of all the
        # untarred copies (tar through the mount, fresh mounts both).
        if [ "$kind" = mixed ]; then ops="write read untar"; else ops="untar readback"; fi
        for op in $ops; do
            lkl_op() { fuse_run lklfuse "$D/l.img" "$MNT1" "$op"; }
            f2_op() { fuse_run fuse2fs "$D/u.img" "$MNT2" "$op"; }
            local T_L T_U M_L M_U what
            read -r T_L T_U M_L M_U < <(best_pair lkl_op "" f2_op "")
            case "$op" in
                write) what="lklfuse write ${BIG} MiB" ;;
                read) what="lklfuse read ${BIG} MiB" ;;
                untar) what="lklfuse untar $FILES files" ;;
                readback) what="lklfuse tar of the untarred copies" ;;
            esac
            row "$what" "$T_L" "fuse2fs" "$T_U" "$M_L" "$M_U"
        done
    fi
    # What this tree's runs wrote is not needed by the next tree.
    rm -rf "$TREE" "$D"/*.img "$D"/*.tar
}

case "$TREES" in
    both) bench_tree mixed; bench_tree small ;;
    *) bench_tree "$TREES" ;;
esac
