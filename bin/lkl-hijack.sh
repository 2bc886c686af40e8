#!/bin/sh
# lkl-hijack.sh PROGRAM ARGS...: run PROGRAM with liblkl-hijack.so preloaded,
# so that its network calls are served by LKL's TCP/IP stack.
#
# The library is $LKL_HIJACK_LIB if set, else found in the build output next
# to this script: $CARGO_TARGET_DIR/release (if set), then ../target/release.
# Cargo cannot put a hyphen in a library's file name, so the file it builds
# (`cargo build --release -p lkl-hijack`) is liblkl_hijack.so; the build also
# leaves the contract name liblkl-hijack.so there as a link to it
# (hijack/lib/build.rs), which is preferred if present. See docs/hijack.md.
set -eu

usage() {
    cat <<'USAGE'
Usage: lkl-hijack.sh PROGRAM [ARGS...]

Runs PROGRAM with liblkl-hijack.so preloaded (LD_PRELOAD): LKL (Linux as a
library) boots before PROGRAM's main and serves its sockets.

Configuration (upstream LKL's): the JSON file in LKL_HIJACK_CONFIG_FILE,
else ./lkl-hijack.json, else the LKL_HIJACK_* variables.

Environment:
  LKL_HIJACK_LIB        path of the library (default: found in target/release
                        next to this script, or $CARGO_TARGET_DIR/release)
  LKL_HIJACK_ZPOLINE=1  use zpoline (lkl-run --zpoline) instead of LD_PRELOAD:
                        every system call is interposed, name resolution included
  LKL_RUN               path of lkl-run for LKL_HIJACK_ZPOLINE=1 (default: found
                        like the library)
USAGE
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac

if [ "${LKL_HIJACK_ZPOLINE:-0}" = "1" ]; then
    # zpoline instead of LD_PRELOAD: lkl-run rewrites every syscall instruction of the
    # program (its libc's internal ones too, such as the resolver's) and boots LKL from
    # the same configuration (see docs/zpoline.md). lkl-run is $LKL_RUN if set, else
    # found like the library below.
    run="${LKL_RUN:-}"
    if [ -z "$run" ]; then
        here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
        for dir in ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release"} "$here/../target/release"; do
            if [ -x "$dir/lkl-run" ]; then
                run="$dir/lkl-run"
                break
            fi
        done
    fi
    if [ -z "$run" ] || [ ! -x "$run" ]; then
        echo "lkl-hijack.sh: cannot find lkl-run${run:+ at $run}; build it with" \
            "\`cargo build --release -p loader\` or set LKL_RUN" >&2
        exit 1
    fi
    exec "$run" --zpoline "$@"
fi

lib="${LKL_HIJACK_LIB:-}"
if [ -z "$lib" ]; then
    here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
    for dir in ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release"} "$here/../target/release"; do
        for name in liblkl-hijack.so liblkl_hijack.so; do
            if [ -f "$dir/$name" ]; then
                lib="$dir/$name"
                break 2
            fi
        done
    done
fi
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
    echo "lkl-hijack.sh: cannot find liblkl-hijack.so${lib:+ at $lib}; build it with" \
        "\`cargo build --release -p lkl-hijack\` or set LKL_HIJACK_LIB" >&2
    exit 1
fi

export LD_PRELOAD="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
exec "$@"
