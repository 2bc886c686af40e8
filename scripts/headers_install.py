#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Install LKL's uapi headers with every name prefixed.

    headers_install.py KERNEL_TREE OUT_INCLUDE_DIR

The kernel's own `make headers_install` produces sanitised uapi headers.
They name the same things as the host's headers (struct stat, O_RDONLY,
__NR_read with other numbers...), so C code could not include both.  This
copies them under OUT/lkl/ and renames every identifier they define:

  * `#include <linux/x.h>` becomes `#include <lkl/linux/x.h>`;
  * macros, typedefs, struct/union/enum tags, enum constants and inline
    functions get `lkl_` (or `LKL_` when the name has no lower-case
    letter); a name starting with `__` gets `__lkl` in front, keeping its
    underscores (`__NR_read` becomes `__lkl__NR_read`, `__u32` becomes
    `__lkl__u32`), and one starting with a single `_` gets `_lkl`/`_LKL`.

Names that already start with lkl_/LKL_ are left alone.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)", re.M)
TAG = re.compile(r"\b(?:struct|union|enum)\s+([A-Za-z_]\w*)")
TYPEDEF = re.compile(r"\btypedef\b([^;{}]*(?:\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})?[^;{}]*);", re.S)
ENUM_BODY = re.compile(r"\benum\b[^{;]*\{([^}]*)\}", re.S)
INLINE = re.compile(r"\b(?:static\s+)?(?:__inline__|inline|__inline)\b[^;{(]*?\b([A-Za-z_]\w*)\s*\(", re.S)
INCLUDE = re.compile(r'^(\s*#\s*include\s*)<([^>]+)>', re.M)
FORCE_CAST = re.compile(r"\(\s*(?:__lkl__force\s+)?__lkl__\w+\s*\)(?=\s*(?:0x|[0-9]))")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)

# Never renamed even if a header defines them.
KEEP = {"__KERNEL__", "__ASSEMBLY__", "__GNUC__", "__x86_64__", "__i386__",
        "__BYTE_ORDER__", "__ORDER_LITTLE_ENDIAN__", "__CHAR_BIT__",
        "__SIZEOF_LONG__", "__STDC_VERSION__", "__cplusplus", "NULL",
        "__attribute__", "__extension__", "__signed__", "__volatile__",
        "__asm__", "__inline__", "__restrict", "__builtin_offsetof",
        "_UAPI_LINUX_TYPES_H"}
# C keywords and the compiler's own types are never names a header defines.
KEEP |= set("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed
sizeof static struct switch typedef union unsigned void volatile while _Bool
_Complex _Static_assert typeof __typeof__ __builtin_va_list
aligned packed __aligned__ __packed__ section unused __unused__ deprecated
noreturn may_alias mode __mode__ vector_size transparent_union""".split())


def prefixed(name):
    if name.startswith(("lkl_", "LKL_", "__lkl", "_lkl", "_LKL")):
        return name
    upper = not any(c.islower() for c in name)
    if name.startswith("__"):
        return "__lkl" + name
    if name.startswith("_"):
        return ("_LKL" if upper else "_lkl") + name
    return ("LKL_" if upper else "lkl_") + name


def defined_names(text):
    text = COMMENT.sub(" ", text)
    names = set(DEFINE.findall(text))
    names.update(TAG.findall(text))
    for body in TYPEDEF.findall(text):
        body = re.sub(r"\{.*\}", " ", body, flags=re.S)
        fnptr = re.search(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)", body)
        if fnptr:
            names.add(fnptr.group(1))
            continue
        idents = IDENT.findall(re.sub(r"\[[^\]]*\]", " ", body))
        if idents:
            names.add(idents[-1])
    for body in ENUM_BODY.findall(text):
        for item in body.split(","):
            m = re.match(r"\s*([A-Za-z_]\w*)", item)
            if m:
                names.add(m.group(1))
    names.update(INLINE.findall(text))
    return names


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: headers_install.py KERNEL_TREE OUT_INCLUDE_DIR")
    tree, out = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["make", "-C", tree, "ARCH=lkl", "-s",
                        "INSTALL_HDR_PATH=" + tmp, "headers_install"],
                       check=True, stdout=sys.stderr)
        src = os.path.join(tmp, "include")
        files = []
        for root, _, names in os.walk(src):
            for n in names:
                if n.endswith(".h"):
                    files.append(os.path.relpath(os.path.join(root, n), src))
        texts = {}
        for rel in files:
            with open(os.path.join(src, rel), encoding="utf-8", errors="surrogateescape") as f:
                texts[rel] = f.read()
        names = set()
        for t in texts.values():
            names |= defined_names(t)
        names -= KEEP
        installed = set(files)

        def fix_include(m):
            path = m.group(2)
            if path in installed:
                return "%s<lkl/%s>" % (m.group(1), path)
            return m.group(0)

        def fix_ident(m):
            name = m.group(0)
            return prefixed(name) if name in names else name

        dest = os.path.join(out, "lkl")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        for rel, text in texts.items():
            parts = INCLUDE.split(text)
            # INCLUDE.split keeps groups: [text, directive, path, text, ...]
            outp = []
            for i in range(0, len(parts), 3):
                outp.append(IDENT.sub(fix_ident, parts[i]))
                if i + 2 < len(parts):
                    path = parts[i + 2]
                    if path in installed:
                        path = "lkl/" + path
                    outp.append("%s<%s>" % (parts[i + 1], path))
            text = "".join(outp)
            # `(__poll_t)0x1`: a cast of a number to a kernel integer type
            # only feeds sparse, and it hides the value from binding
            # generators
            text = FORCE_CAST.sub("", text)
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(text)
    print("installed %d prefixed headers in %s" % (len(files), dest), file=sys.stderr)


if __name__ == "__main__":
    main()
