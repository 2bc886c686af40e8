#!/usr/bin/env bash
# Build the LKL kernel library through a cache outside the clone.
#
#   scripts/build-kernel.sh            build (or reuse) and print the output dir
#
# The output dir, keyed by the linux-source package version and a hash of
# linux/, holds lib/liblkl.a (the kernel as one relocatable object with only
# the lkl_* API global), include/lkl/ (the uapi headers, names prefixed) and
# share/syscall_defs.txt (each system call's signature).
# The build tree itself is kept per source version, so a change in linux/
# rebuilds only what it touches.
#
# Environment: LKL_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/lkl),
# LKL_JOBS (default: nproc), LKL_SOURCE_DEB (a linux-source-6.12 .deb to use).
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi
if (($#)); then
	echo "usage: build-kernel.sh [--help]" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LKL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lkl}
PKG=linux-source-6.12
JOBS=${LKL_JOBS:-$(nproc)}

die() {
	echo "build-kernel: error: $*" >&2
	exit 1
}
log() {
	echo "build-kernel: $*" >&2
}

# 1. Tools.
missing=()
for tool in gcc make flex bison bc objcopy ar python3 rsync patch xz dpkg-deb perl; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	die "missing build tools: ${missing[*]}; install them with: apt-get install -y gcc make flex bison bc binutils python3 rsync patch xz-utils dpkg perl libelf-dev"
fi

# 2. The source package.
mkdir -p "$CACHE/src"
deb=${LKL_SOURCE_DEB:-}
if [[ -z $deb ]]; then
	deb=$(ls -1 "$CACHE"/src/${PKG}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
fi
if [[ -z $deb ]]; then
	log "fetching $PKG with apt-get download"
	(cd "$CACHE/src" && apt-get download "$PKG" >&2) ||
		die "$PKG is not available; run: apt-get update && apt-get download $PKG (or apt-get install $PKG), then retry"
	deb=$(ls -1 "$CACHE"/src/${PKG}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	[[ -n $deb ]] || die "apt-get download $PKG produced no .deb in $CACHE/src"
fi
[[ -f $deb ]] || die "$deb: no such file"
version=$(dpkg-deb -f "$deb" Version) || die "$deb is not a valid .deb"
pristine="$CACHE/src/linux-$version"
if [[ ! -f $pristine/.lkl-unpacked ]]; then
	log "unpacking $PKG $version"
	rm -rf "$pristine" "$pristine.tmp"
	mkdir -p "$pristine.tmp"
	dpkg-deb -x "$deb" "$pristine.tmp/deb"
	tarball=$(ls "$pristine.tmp"/deb/usr/src/linux-source-*.tar.xz 2>/dev/null | head -n1)
	[[ -n $tarball ]] || die "$deb holds no linux-source tarball"
	tar -xJf "$tarball" -C "$pristine.tmp"
	mv "$pristine.tmp"/linux-source-6.12 "$pristine"
	rm -rf "$pristine.tmp"
	touch "$pristine/.lkl-unpacked"
fi

# 3. The output, keyed by source version and our port.
hash=$(cd "$ROOT" && find linux scripts/build-kernel.sh scripts/headers_install.py -type f -print0 |
	LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
out="$CACHE/out/$version-$hash"
if [[ -f $out/.done ]]; then
	echo "$out"
	exit 0
fi

# One build at a time: cargo may run this from several build scripts at once.
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
	log "waiting for another kernel build to finish"
	flock 9
fi
if [[ -f $out/.done ]]; then
	echo "$out"
	exit 0
fi

# 4. The build tree: a hard-linked copy of the pristine source, our
#    arch/lkl synced in, our core patches applied.
tree="$CACHE/build/linux-$version"
if [[ ! -f $tree/.lkl-tree ]]; then
	log "creating build tree $tree"
	rm -rf "$tree"
	mkdir -p "$(dirname "$tree")"
	[[ -d $pristine && ! -L $pristine ]] || die "$pristine must be a real directory, not a link"
	mkdir -p "$tree"
	cp -al "$pristine/." "$tree"
	touch "$tree/.lkl-tree"
fi
mkdir -p "$tree/arch/lkl"
# --delete drops files removed from linux/, but not what the kernel build
# generates inside arch/lkl
# Changed files get the time of the copy, not the source's (no -t): make
# then rebuilds them even when the tree's objects are newer than our
# source (another checkout of linux/ built in this tree in between).
rsync -rlpD --checksum --delete --exclude=/include/generated/ \
	--exclude='*.o' --exclude='*.a' --exclude='.*.cmd' --exclude='.*.d' \
	--exclude='*.lds' --exclude='*.s' --exclude='modules.order' \
	"$ROOT/linux/arch/lkl/" "$tree/arch/lkl/"

patch_hash=$(cat "$ROOT"/linux/patches/*.patch 2>/dev/null | sha256sum | cut -c1-16)
if [[ $(cat "$tree/.lkl-patches" 2>/dev/null) != "$patch_hash" ]]; then
	# put back the pristine version of every file a patch ever touched
	if [[ -f $tree/.lkl-patched-files ]]; then
		while read -r f; do
			rm -f "$tree/$f"
			cp "$pristine/$f" "$tree/$f" # a new time: make rebuilds it
		done <"$tree/.lkl-patched-files"
	fi
	: >"$tree/.lkl-patched-files"
	for p in "$ROOT"/linux/patches/*.patch; do
		[[ -e $p ]] || continue
		log "applying $(basename "$p")"
		lsdiff_files=$(grep -E '^\+\+\+ ' "$p" | sed -E 's@^\+\+\+ [^/]+/([^\t ]+).*@\1@')
		echo "$lsdiff_files" >>"$tree/.lkl-patched-files"
		for f in $lsdiff_files; do
			# break the hard link to the pristine source before patching
			if [[ -f $tree/$f ]]; then
				cp "$tree/$f" "$tree/$f.lkl-tmp"
				mv "$tree/$f.lkl-tmp" "$tree/$f"
			fi
		done
		patch -d "$tree" -p1 --forward --quiet --no-backup-if-mismatch <"$p" ||
			die "$(basename "$p") does not apply to $PKG $version: the source does not match our patches; update linux/patches/ for this version"
	done
	echo "$patch_hash" >"$tree/.lkl-patches"
fi

# A header added to or removed from arch/lkl/include shadows or unshadows
# another (asm-generic's wrapper, for instance): the objects' recorded
# dependencies do not show that, so everything is rebuilt. A tree without
# the record was built before it existed: rebuilt too.
headers=$(cd "$ROOT/linux/arch/lkl" && find include -name '*.h' | LC_ALL=C sort | sha256sum | cut -c1-16)
if [[ $(cat "$tree/.lkl-headers" 2>/dev/null) != "$headers" ]]; then
	if [[ -f $tree/vmlinux || -f $tree/lkl.o ]]; then
		log "the port's set of headers changed: rebuilding everything"
		make -C "$tree" ARCH=lkl clean >&2
	fi
	echo "$headers" >"$tree/.lkl-headers"
fi

# 5. Configure and build.
if ! cmp -s "$ROOT/linux/arch/lkl/configs/defconfig" "$tree/.lkl-defconfig"; then
	log "configuring"
	cp "$ROOT/linux/arch/lkl/configs/defconfig" "$tree/.config"
	make -C "$tree" ARCH=lkl olddefconfig >&2
	cp "$ROOT/linux/arch/lkl/configs/defconfig" "$tree/.lkl-defconfig"
fi
log "building with $JOBS jobs (a cold build takes a while; warm builds are incremental)"
start=$(date +%s)
make -C "$tree" ARCH=lkl -j"$JOBS" lkl_lib >&2 || die "kernel build failed (see the messages above)"
log "kernel built in $(($(date +%s) - start)) s"

# 6. Install into the keyed output dir.
rm -rf "$out.tmp"
mkdir -p "$out.tmp/lib" "$out.tmp/include" "$out.tmp/share"
cp "$tree/lkl.o" "$out.tmp/lib/lkl.o"
cp "$tree/syscall_defs.txt" "$out.tmp/share/syscall_defs.txt"
ar rcs "$out.tmp/lib/liblkl.a" "$out.tmp/lib/lkl.o"
python3 "$ROOT/scripts/headers_install.py" "$tree" "$out.tmp/include" >&2 ||
	die "installing the prefixed uapi headers failed"
touch "$out.tmp/.done"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
