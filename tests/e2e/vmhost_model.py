#!/usr/bin/env python3
"""Drives vmhost through random guest writes and snapshot operations and checks, after every
step, that qemu-img reads exactly what a simple in-memory model holds, for the current state
and every snapshot, and that qemu-img check is clean on every sparse file.

Usage: vmhost_model.py VMHOST DATASTORE SEED STEPS"""
import glob
import json
import os
import random
import subprocess
import sys

vmhost, ds, seed, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
SIZES = [4 << 20, 1 << 20]  # two disks
VM = "model"


def run(*args, ok=True):
    p = subprocess.run([vmhost, "--datastore", ds, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit("vmhost %s failed: %s" % (" ".join(args), p.stderr))
    return p


def info():
    return json.loads(run("--json", "vm", "info", VM).stdout)


def qemu_raw(path):
    out = path + ".raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", path, out], check=True)
    data = open(out, "rb").read()
    os.unlink(out)
    return data


model = [bytearray(s) for s in SIZES]  # the current state
snaps = {}  # uid -> (name, [bytes per disk])
cases = {"base": 0, "current-path": 0, "off-path": 0}


def check(step):
    vm = info()
    if vm["problems"]:
        sys.exit("step %d: problems: %s" % (step, vm["problems"]))
    vmdir = os.path.join(ds, VM)
    for d in vm["disks"]:
        got = qemu_raw(os.path.join(vmdir, d["file"]))
        if got != model[d["index"]]:
            sys.exit("step %d: disk %d current state differs from the model" % (step, d["index"]))
    listed = {s["uid"]: s for s in vm["snapshots"]}
    if set(listed) != set(snaps):
        sys.exit("step %d: snapshots %s, model has %s" % (step, sorted(listed), sorted(snaps)))
    for uid, (_, states) in snaps.items():
        for d in listed[uid]["disks"]:
            i = int(d["node"].split(":")[1])
            got = qemu_raw(os.path.join(vmdir, d["file"]))
            if got != states[i]:
                sys.exit("step %d: snapshot %d disk %d differs from the model" % (step, uid, i))
    for f in glob.glob(os.path.join(vmdir, "*-0*.vmdk")):
        if f.endswith("-ctk.vmdk"):
            continue
        p = subprocess.run(["qemu-img", "check", f], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("step %d: qemu-img check %s: %s" % (step, f, p.stdout + p.stderr))


def write():
    d = rng.randrange(len(SIZES))
    off = rng.randrange(SIZES[d])
    length = rng.randint(1, min(300000, SIZES[d] - off))
    byte = rng.randrange(256)
    run("disk", "write", VM, str(d), "--offset", str(off), "--length", str(length), "--pattern", str(byte))
    model[d][off:off + length] = bytes([byte]) * length


def snapshot():
    if len(snaps) >= 8:
        return
    name = "s%d" % rng.randrange(1000000)
    out = json.loads(run("--json", "snapshot", "create", VM, name).stdout)
    snaps[out["uid"]] = (name, [bytes(m) for m in model])


def classify(uid, vm):
    s = {x["uid"]: x for x in vm["snapshots"]}[uid]
    if any(d["file"] in ("%s.vmdk" % VM, "%s_1.vmdk" % VM) for d in s["disks"]):
        return "base"
    path, at = [], vm["current_snapshot"]
    parents = {x["uid"]: x["parent"] for x in vm["snapshots"]}
    while at is not None:
        path.append(at)
        at = parents[at]
    return "current-path" if uid in path else "off-path"


def delete(uid=None):
    if not snaps:
        return
    uid = uid if uid is not None else rng.choice(sorted(snaps))
    cases[classify(uid, info())] += 1
    run("snapshot", "delete", VM, str(uid))
    del snaps[uid]


def revert(uid=None):
    if not snaps:
        return
    uid = uid if uid is not None else rng.choice(sorted(snaps))
    run("snapshot", "revert", VM, str(uid))
    for i, state in enumerate(snaps[uid][1]):
        model[i] = bytearray(state)
    run("vm", "power-on", VM)


def delete_all():
    run("snapshot", "delete-all", VM)
    snaps.clear()


run("init")
run("vm", "create", VM, "--disk", str(SIZES[0]), "--disk", str(SIZES[1]), "--cbt")
run("vm", "power-on", VM)
# A prelude that reaches every case of delete: off the current path, on it, on the base.
step = 0
for op in [write, snapshot, write, snapshot, write, lambda: revert(min(snaps)), write, snapshot,
           lambda: delete(sorted(snaps)[1]), write, lambda: delete(max(snaps)), write,
           lambda: delete(min(snaps)), write, snapshot, write, snapshot, delete_all, write]:
    op()
    step += 1
    check(step)
ops = [write] * 6 + [snapshot] * 3 + [delete] * 2 + [revert] + [delete_all] * 0 + [lambda: run("vm", "consolidate", VM)]
for _ in range(steps):
    rng.choice(ops + ([delete_all] if rng.random() < 0.05 else []))()
    step += 1
    check(step)
for case, n in cases.items():
    if n == 0:
        sys.exit("delete case '%s' never happened" % case)
print("model: %d steps, deletes %s, all states match qemu-img" % (step, cases))
