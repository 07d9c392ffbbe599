#!/usr/bin/env python3
"""Compares `vmbackup vmdk map --json` with `qemu-img map --output=json`.

Allocated means: qemu-img says "present": true; vmbackup lists a data or zero run. Both must
cover exactly the same bytes, and wherever both name a layer, the depths must agree."""
import json
import sys


def intervals(runs):
    out = []
    for s, e, d in sorted(runs):
        if out and out[-1][1] == s and out[-1][2] == d:
            out[-1] = (out[-1][0], e, d)
        else:
            out.append((s, e, d))
    return out


def covered(ivs):
    merged = []
    for s, e, _ in ivs:
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


ours = json.load(open(sys.argv[1]))
theirs = json.load(open(sys.argv[2]))
o = intervals((r["offset"], r["offset"] + r["length"], r["depth"]) for r in ours)
t = intervals((r["start"], r["start"] + r["length"], r["depth"]) for r in theirs if r["present"])
if covered(o) != covered(t):
    print("allocated ranges differ:\n ours:   %s\n qemu:   %s" % (covered(o)[:20], covered(t)[:20]))
    sys.exit(1)
if o != t:
    print("layers differ:\n ours:   %s\n qemu:   %s" % (o[:20], t[:20]))
    sys.exit(1)
print("maps agree: %d runs, %d bytes" % (len(o), sum(e - s for s, e, _ in o)))
