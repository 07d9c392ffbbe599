#!/usr/bin/env bash
# Every kind of file our writer makes (flat, vmfs, sparse, a chain of sparse children,
# stream) passes `qemu-img check` and `qemu-img compare` against the expected raw content.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io python3

size=$((70 * 1024 * 1024 + 512))  # not a multiple of the grain
qemu-img create -q -f raw src.raw $size
qemu-io -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 65000 70000' -c 'write -P 0x33 20M 5M' \
  -c "write -P 0x44 $((size - 1024)) 1024" src.raw >/dev/null

for t in flat vmfs sparse stream; do
  "$VMBACKUP" vmdk convert src.raw conv-$t.vmdk --type $t >/dev/null
  check_qemu conv-$t.vmdk src.raw
  check_cat conv-$t.vmdk
  echo "ok: convert raw -> $t"
done
# VMDK to VMDK, and the converted stream back to sparse.
"$VMBACKUP" vmdk convert conv-stream.vmdk back.vmdk --type sparse >/dev/null
check_qemu back.vmdk src.raw
# qemu-img sees the right types.
qemu-img info conv-vmfs.vmdk | grep -q 'create type: vmfs' || fail "vmfs create type"
qemu-img info conv-stream.vmdk | grep -q 'create type: streamOptimized' || fail "stream create type"
# Refuses to overwrite.
if "$VMBACKUP" vmdk convert src.raw conv-flat.vmdk --type flat 2>err.txt; then fail "overwrote"; fi
grep -q 'already exists' err.txt || fail "no 'already exists' message"

# Created disks written by our writer: flat, vmfs, and a chain of four sparse layers.
cp src.raw model.raw
for t in flat vmfs; do
  "$VMBACKUP" vmdk create new-$t.vmdk --size $size --type $t
  "$VMBACKUP" vmdk write new-$t.vmdk --from src.raw
  check_qemu new-$t.vmdk src.raw
done
"$VMBACKUP" vmdk create layer0.vmdk --size $size --type sparse
"$VMBACKUP" vmdk write layer0.vmdk --from src.raw
check_qemu layer0.vmdk model.raw
prev=layer0.vmdk
for i in 1 2 3; do
  "$VMBACKUP" vmdk create layer$i.vmdk --parent $prev
  off=$((i * 7 * 1024 * 1024 + i * 1000))   # unaligned: copy-on-write of partial grains
  len=$((i * 300000))
  byte=$((0x60 + i))
  "$VMBACKUP" vmdk write layer$i.vmdk --offset $off --length $len --pattern $byte
  model_write model.raw $off $len $byte
  for f in layer*.vmdk; do qemu-img check "$f" >/dev/null || fail "qemu-img check $f"; done
  check_qemu layer$i.vmdk model.raw
  prev=layer$i.vmdk
done
[ "$(qemu-img info --backing-chain layer3.vmdk | grep -c '^image:')" = 4 ] || fail "qemu sees no chain of 4"
# qemu writes into our sparse child, we read it back.
qemu-io -f vmdk -c 'write -P 0x99 1M 8k' layer3.vmdk >/dev/null
model_write model.raw $((1024 * 1024)) 8192 0x99
check_qemu layer3.vmdk model.raw
check_cat layer3.vmdk
check_map layer3.vmdk
echo "ok: chain of 4 written by vmbackup and qemu"

# Zeroed-grain entries: whole zero grains in a version-2 child hide the parent without data.
"$VMBACKUP" vmdk create zg.vmdk --parent layer3.vmdk --zeroed-grain
"$VMBACKUP" vmdk write zg.vmdk --offset 20M --length 1M --pattern 0
model_write model.raw $((20 * 1024 * 1024)) 1048576 0
check_qemu zg.vmdk model.raw
[ "$(stat -c %s zg.vmdk)" -lt 1048576 ] || fail "zero grains were stored as data"
qemu-img map --output=json zg.vmdk | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["depth"] == 0]
ok = any(r["zero"] and r["start"] <= 20 << 20 and r["start"] + r["length"] >= 21 << 20 for r in runs)
sys.exit(0 if ok else "qemu does not see the zeroed grains in zg.vmdk: %s" % runs)' || fail "zeroed grains"
check_map zg.vmdk
echo "ok: zeroed-grain entries"
