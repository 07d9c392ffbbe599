#!/usr/bin/env python3
"""CBT ground truth: random writes between snapshots. For every pair of snapshots (k, j), the
union of all pages of QueryChangedDiskAreas(j, changeId(k)) covers every byte written between
them and nothing outside the written blocks; '*' covers all allocated data; answers are paged
(at most 3 areas each); invalidation (hard power-off, revert) makes old change ids fail.

Usage: vmhost_cbt.py VMHOST DATASTORE SEED"""
import json
import os
import random
import subprocess
import sys

vmhost, ds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
G = 65536
SIZE = 16 << 20
VM = "cbt"


def run(*args, ok=True):
    p = subprocess.run([vmhost, "--datastore", ds, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit("vmhost %s failed: %s" % (" ".join(args), p.stderr))
    return p


def changes(snap, change_id):
    pages = json.loads(run("--json", "cbt", "changes", VM, "--snapshot", snap, "--change-id",
                           change_id, "--all").stdout)
    covered, pos = [], 0
    for p in pages:
        if p["start_offset"] != pos:
            sys.exit("page starts at %d, expected %d" % (p["start_offset"], pos))
        if len(p["changed_area"]) > 3:
            sys.exit("a page holds %d areas, more than the 3 configured" % len(p["changed_area"]))
        for a in p["changed_area"]:
            if not (p["start_offset"] <= a["start"] and a["start"] + a["length"] <= p["start_offset"] + p["length"]):
                sys.exit("area %s outside its page" % a)
            covered.append((a["start"], a["start"] + a["length"]))
        pos = p["start_offset"] + p["length"]
    if pos != SIZE:
        sys.exit("pages end at %d, not at the disk end %d" % (pos, SIZE))
    return covered, len(pages)


run("init")
run("vm", "create", VM, "--disk", str(SIZE), "--cbt")
vmx = os.path.join(ds, VM, VM + ".vmx")
with open(vmx, "a") as f:
    f.write('vmhost.cbtMaxAreas = "3"\n')
run("vm", "power-on", VM)
writes = []  # (snapshot index at which the write happened, offset, length)
written_blocks_all = set()
n_snaps = 6
for k in range(n_snaps):
    for _ in range(rng.randint(1, 8)):
        off = rng.randrange(SIZE)
        length = rng.randint(1, min(200000, SIZE - off))
        run("disk", "write", VM, "0", "--offset", str(off), "--length", str(length), "--pattern", "7")
        writes.append((k, off, length))
    run("snapshot", "create", VM, "s%d" % k)
ids = [run("cbt", "change-id", VM, "--snapshot", "s%d" % k).stdout.strip() for k in range(n_snaps)]
max_pages = 0
for k in range(n_snaps):
    for j in range(k, n_snaps):
        covered, pages = changes("s%d" % j, ids[k])
        max_pages = max(max_pages, pages)
        written = [(o, o + l) for (w, o, l) in writes if k < w <= j]
        blocks = {b for (s, e) in written for b in range(s // G, (e - 1) // G + 1)}
        for s, e in written:
            for b in range(s, e, 4096):
                if not any(cs <= b < ce for cs, ce in covered):
                    sys.exit("s%d since s%d: written byte %d not reported" % (j, k, b))
        for cs, ce in covered:
            for b in range(cs // G, (ce - 1) // G + 1):
                if b not in blocks:
                    sys.exit("s%d since s%d: block %d reported but not written" % (j, k, b))
# '*' covers all allocated data of the last snapshot.
covered, _ = changes("s%d" % (n_snaps - 1), "*")
for (w, o, l) in writes:
    if not any(cs <= o and o + l <= ce for cs, ce in covered) and not all(
            any(cs <= b < ce for cs, ce in covered) for b in range(o, o + l, 4096)):
        sys.exit("'*' misses written data at %d+%d" % (o, l))
if max_pages < 2:
    sys.exit("no answer needed paging; the test is too weak")
# A change id from the future and one from nowhere.
p = run("cbt", "changes", VM, "--snapshot", "s0", "--change-id", ids[3], ok=False)
if p.returncode == 0 or "newer" not in p.stderr:
    sys.exit("a newer change id was not refused: %s" % p.stderr)
p = run("cbt", "changes", VM, "--snapshot", "s0", "--change-id", "garbage", ok=False)
if p.returncode == 0 or "is not of the form" not in p.stderr:
    sys.exit("a malformed change id was not refused: %s" % p.stderr)
# The current state of a running VM cannot be queried.
p = run("cbt", "changes", VM, "--change-id", ids[0], ok=False)
if p.returncode == 0 or "running VM" not in p.stderr:
    sys.exit("query of a running VM's current state was not refused")
# Hard power-off invalidates every change id.
run("vm", "power-off", VM, "--hard")
p = run("cbt", "changes", VM, "--snapshot", "s5", "--change-id", ids[2], ok=False)
if p.returncode == 0 or "reset" not in p.stderr:
    sys.exit("hard power-off did not invalidate change ids: %s" % p.stderr)
new_id = run("cbt", "change-id", VM, "--snapshot", "s5").stdout.strip()
if new_id.split("/")[0] == ids[2].split("/")[0]:
    sys.exit("the epoch did not change")
# After a revert, too.
run("vm", "power-on", VM)
run("disk", "write", VM, "0", "--offset", "0", "--length", "10", "--pattern", "1")
run("snapshot", "create", VM, "t")
before = run("cbt", "change-id", VM, "--snapshot", "t").stdout.strip()
run("snapshot", "revert", VM, "s2")
p = run("cbt", "changes", VM, "--snapshot", "t", "--change-id", before, ok=False)
if p.returncode == 0 or "reset" not in p.stderr:
    sys.exit("revert did not invalidate change ids: %s" % p.stderr)
# Resizing a disk invalidates change ids (snapshots must go first).
p = run("disk", "resize", VM, "0", "--size", str(2 * SIZE), ok=False)
if p.returncode == 0 or "has snapshots" not in p.stderr:
    sys.exit("resize with snapshots was not refused: %s" % p.stderr)
run("snapshot", "delete-all", VM)
run("vm", "power-off", VM)
before = run("cbt", "change-id", VM).stdout.strip()
run("disk", "resize", VM, "0", "--size", str(2 * SIZE))
p = run("cbt", "changes", VM, "--change-id", before, ok=False)
if p.returncode == 0 or "reset" not in p.stderr:
    sys.exit("resize did not invalidate change ids: %s" % p.stderr)
size = json.loads(run("--json", "vm", "info", VM).stdout)["disks"][0]["capacity"]
if size != 2 * SIZE:
    sys.exit("resize: capacity %d" % size)
out = subprocess.run(["qemu-img", "info", "--output=json", os.path.join(ds, VM, VM + ".vmdk")],
                     capture_output=True, text=True, check=True).stdout
if json.loads(out)["virtual-size"] != 2 * SIZE:
    sys.exit("qemu-img does not see the new size")
print("cbt: %d writes, %d snapshots, up to %d pages per query: exact" % (len(writes), n_snaps, max_pages))
