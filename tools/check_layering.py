#!/usr/bin/env python3
"""Checks that includes between vmbackup's libraries point down only (docs/architecture.md).

Every #include "x/y.h" inside src/<lib>/ must name a header of <lib> itself or of a library
that <lib> may depend on. A new edge needs an edit here and in docs/architecture.md."""
import os
import re
import sys

# library folder -> libraries it may include (besides itself)
ALLOWED = {
    "base": set(),
    "openssl": {"base"},
    "io": {"base"},
    "format/vmdk": {"io", "base"},
    "nbd": {"io", "base"},
    "host": {"format/vmdk", "io", "base"},
    "storage": {"base"},
    "s3": {"storage", "http", "xml", "base"},
    "location": {"s3", "storage", "base"},
    "repo": {"storage", "base"},
    "catalog": {"repo", "storage", "base"},
    "xml": {"base"},
    "http": {"base"},
    "hv": {"io", "base"},
    "hv/vsphere": {"hv", "http", "xml", "nbd", "format/vmdk", "io", "base"},
    "hv/vmhost": {"hv", "host", "nbd", "format/vmdk", "io", "base"},
    "hv/libvirt": {"hv", "xml", "nbd", "io", "base"},
    "vsphere_api": {"host", "xml", "format/vmdk", "io", "base"},
    "engine": {"hv", "catalog", "repo", "storage", "io", "base"},
    "live": {"location", "repo", "storage", "io", "base"},
    "files": {"base"},
    "instant": {"live", "hv/libvirt", "xml", "repo", "io", "base"},
    "restore_check": {"instant", "files", "live", "hv/libvirt", "repo", "storage", "io", "base"},
    "cli": {"location", "restore_check", "instant", "live", "files", "vsphere_api", "hv/vsphere", "hv/libvirt", "http", "xml", "hv/vmhost", "hv", "engine", "nbd", "host", "catalog", "repo", "storage", "format/vmdk",
            "io", "base"},
}

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
libs = sorted(ALLOWED, key=len, reverse=True)


def lib_of(path):
    for lib in libs:
        if path == lib or path.startswith(lib + "/"):
            return lib
    return None


errors = []
for dirpath, _, files in os.walk(root):
    for name in files:
        if not name.endswith((".h", ".cc")):
            continue
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, root)
        owner = lib_of(os.path.dirname(rel))
        if owner is None:
            errors.append("%s: folder is not a known library (add it to ALLOWED)" % rel)
            continue
        for n, line in enumerate(open(full, encoding="utf-8"), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            target = lib_of(os.path.dirname(m.group(1)))
            if target is None or target == owner or target in ALLOWED[owner]:
                continue
            errors.append("%s:%d: %s may not include %s" % (rel, n, owner, m.group(1)))
for e in errors:
    print(e)
if errors:
    sys.exit(1)
print("layering: ok (%d libraries)" % len(ALLOWED))
