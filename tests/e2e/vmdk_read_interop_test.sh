#!/usr/bin/env bash
# Every VMDK subformat qemu-img writes, plus hand-written vmfs descriptors, a qemu-made chain,
# and ESXi COWD / SEsparse deltas and a VMware-style stream: `vmbackup vmdk cat` must equal
# `qemu-img convert -O raw`, and `vmbackup vmdk map` must agree with `qemu-img map`.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io python3

# Scattered writes: sector-aligned and not, across grain and 2 GiB extent boundaries, a zero
# write, and the very last sector.
patterns=(
  -c 'write -P 0xa1 0 512'
  -c 'write -P 0xb2 65535 2'
  -c 'write -P 0xc3 1M 3M'
  -c 'write -P 0xd4 2047M 2M'
  -c 'write -z 1088K 64K'
  -c 'write -P 0xe5 2090M 1M'
  -c 'write -P 0xf6 2199551488 512'
)
size=2199552000   # 2 GiB + 49 MiB + 1 KiB: odd for every grain size, crosses the 2 GiB split

for sub in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  f=$sub.vmdk
  qemu-img create -q -f vmdk -o subformat=$sub,adapter_type=lsilogic "$f" $size
  qemu-io -f vmdk "${patterns[@]}" "$f" >/dev/null
  check_cat "$f"
  check_map "$f"
  echo "ok: $sub"
done

# streamOptimized: qemu only appends whole grains, so it is made by convert from a raw image.
qemu-img create -q -f raw src.raw $size
qemu-io -f raw "${patterns[@]}" src.raw >/dev/null
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized src.raw stream.vmdk
check_cat stream.vmdk
check_map stream.vmdk
echo "ok: streamOptimized"

# A hand-written ESXi vmfs descriptor over a flat file.
qemu-img create -q -f vmdk -o subformat=monolithicFlat esx.vmdk 64M
sed -i 's/createType="monolithicFlat"/createType="vmfs"/; s/^RW \([0-9]*\) FLAT "\(.*\)" 0$/RW \1 VMFS "\2"/' esx.vmdk
printf 'ddb.thinProvisioned = "1"\nddb.uuid = "60 00 C2 90 d1 69 8c d2-f6 65 3b 98 be 64 04 5e"\n' >> esx.vmdk
grep -q 'VMFS "esx-flat.vmdk"' esx.vmdk || fail "vmfs descriptor not made"
qemu-io -f vmdk -c 'write -P 0x5a 4097 100000' -c 'write -P 0x5b 60M 4M' esx.vmdk >/dev/null
check_cat esx.vmdk
check_map esx.vmdk
"$VMBACKUP" vmdk info --json esx.vmdk | grep -q '"type": "VMFS"' || fail "info does not show VMFS"
echo "ok: vmfs"

# A chain made by qemu: sparse base, two sparse children (one twoGbMaxExtentSparse).
qemu-img create -q -f vmdk base.vmdk 200M
qemu-io -f vmdk -c 'write -P 0x10 0 100M' base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk
qemu-io -f vmdk -c 'write -P 0x20 10M 1M' -c 'write -P 0x21 150M 100k' mid.vmdk >/dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b mid.vmdk -F vmdk top.vmdk
qemu-io -f vmdk -c 'write -P 0x30 10M 4k' -c 'write -z 50M 64k' top.vmdk >/dev/null
check_cat top.vmdk
check_map top.vmdk
[ "$("$VMBACKUP" vmdk info --json top.vmdk | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["chain"]))')" = 3 ] \
  || fail "info does not show a chain of 3"
echo "ok: qemu chain"

# ESXi deltas (COWD, SEsparse) over a base, and a VMware-style stream with GD_AT_END.
qemu-img create -q -f vmdk base1m.vmdk 1M
qemu-io -f vmdk -c 'write -P 0x41 0 1M' base1m.vmdk >/dev/null
mkdir samples && cp base1m.vmdk samples/base.vmdk && cd samples
cid=$(qemu-img info --output=json base.vmdk | python3 -c 'import json,sys; print("%08x" % json.load(sys.stdin)["format-specific"]["data"]["cid"])')
python3 "$SHARED_TOOLS/make_vmdk_samples.py" "$cid"
for f in d.vmdk s.vmdk x.vmdk; do
  check_cat "$f"
  check_map "$f"
done
"$VMBACKUP" vmdk info d.vmdk | grep -q 'cowd' || fail "info does not name the COWD extent"
"$VMBACKUP" vmdk info s.vmdk | grep -q 'sesparse' || fail "info does not name the SEsparse extent"
echo "ok: COWD, SEsparse, VMware stream"
