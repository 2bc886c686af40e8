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
                        (any value but empty or 0 turns it on)
  LKL_RUN               path of lkl-run for LKL_HIJACK_ZPOLINE=1 (default: found
                        like the library)

Without zpoline, PROGRAM (found in PATH like exec does) is checked first:
ld.so ignores LD_PRELOAD for a 32-bit program, and for a setuid, setgid or
file-capability program that raises privileges, which would then run on the
host's network. Those are refused (exit 126), naming the reason and the fix.
USAGE
}

die() {
    echo "lkl-hijack.sh: $*" >&2
    exit 126
}

# find_program NAME: the file exec would run for NAME (searched in PATH when it has no
# slash), or nothing when there is none: exec then reports it.
find_program() {
    case "$1" in
        */*) [ -e "$1" ] && printf '%s\n' "$1"; return 0 ;;
    esac
    rest="${PATH-/usr/local/bin:/usr/bin:/bin}:"
    while [ -n "$rest" ]; do
        dir="${rest%%:*}"
        rest="${rest#*:}"
        if [ -f "${dir:-.}/$1" ] && [ -x "${dir:-.}/$1" ]; then
            printf '%s\n' "${dir:-.}/$1"
            return 0
        fi
    done
}

# file_caps FILE: prints FILE's file capabilities (the security.capability attribute),
# nothing if it has none; fails when no tool to read them is installed.
file_caps() {
    for tool in getcap /usr/sbin/getcap /sbin/getcap; do
        if command -v "$tool" >/dev/null 2>&1; then
            out=$("$tool" -- "$1" 2>/dev/null) || out=""
            printf '%s\n' "${out#"$1"}" | sed 's/^ *//; s/^= *//'
            return 0
        fi
    done
    if command -v getfattr >/dev/null 2>&1; then
        if getfattr -n security.capability -- "$1" >/dev/null 2>&1; then
            echo security.capability
        fi
        return 0
    fi
    return 1
}

# check_preloadable FILE: refuses a program whose ld.so would ignore LD_PRELOAD.
check_preloadable() {
    file="$1"
    [ -f "$file" ] && [ -r "$file" ] || return 0
    # e_ident: "\177ELF", then EI_CLASS (1: 32-bit, 2: 64-bit).
    if [ "$(od -An -c -N4 -- "$file" | tr -d ' ')" = '177ELF' ] &&
        [ "$(od -An -tu1 -j4 -N1 -- "$file" | tr -d ' ')" = 1 ]; then
        die "$file is a 32-bit program: ld.so would not load the 64-bit hijack library" \
            "into it, and it would run on the host's network; LKL serves x86-64 programs" \
            "only (zpoline neither runs 32-bit programs): use an x86-64 build of it"
    fi
    uid=$(id -u)
    if [ -u "$file" ] && [ "$(stat -L -c %u -- "$file")" != "$uid" ]; then
        die "$file is setuid (owner uid $(stat -L -c %u -- "$file")): ld.so ignores" \
            "LD_PRELOAD for it, so it would run on the host's network; use" \
            "LKL_HIJACK_ZPOLINE=1 (lkl-run runs it on LKL, without the setuid privileges)"
    fi
    if [ -g "$file" ] && [ "$(stat -L -c %g -- "$file")" != "$(id -g)" ]; then
        die "$file is setgid (group gid $(stat -L -c %g -- "$file")): ld.so ignores" \
            "LD_PRELOAD for it, so it would run on the host's network; use" \
            "LKL_HIJACK_ZPOLINE=1 (lkl-run runs it on LKL, without the setgid privileges)"
    fi
    [ "$uid" = 0 ] && return 0
    caps=$(file_caps "$file") ||
        die "cannot check $file for file capabilities (ld.so ignores LD_PRELOAD for a" \
            "program that gains capabilities): install getcap (libcap2-bin) or getfattr" \
            "(attr), or use LKL_HIJACK_ZPOLINE=1"
    if [ -n "$caps" ]; then
        die "$file has file capabilities ($caps): ld.so ignores" \
            "LD_PRELOAD for it, so it would run on the host's network; use" \
            "LKL_HIJACK_ZPOLINE=1 (lkl-run runs it on LKL, without the capabilities)"
    fi
    return 0
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac

zpoline="${LKL_HIJACK_ZPOLINE:-0}"
if [ "$zpoline" != 0 ]; then
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

check_preloadable "$(find_program "$1")"

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
