#!/usr/bin/env bash
# Odd capacities: not a multiple of the grain, one sector, and sparse disks over 2 TiB that
# hold little data.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io python3

for size in 512 66048 1000448; do
  for sub in monolithicSparse monolithicFlat streamOptimized; do
    f=q-$sub-$size.vmdk
    qemu-img create -q -f raw r.raw $size
    qemu-io -f raw -c "write -P 0x7e $((size - 512)) 512" r.raw >/dev/null
    qemu-img convert -f raw -O vmdk -o subformat=$sub r.raw "$f"
    check_cat "$f"
    check_map "$f"
  done
  for t in flat vmfs sparse stream; do
    f=o-$t-$size.vmdk
    "$VMBACKUP" vmdk convert r.raw "$f" --type $t >/dev/null
    check_qemu "$f" r.raw
  done
  [ "$("$VMBACKUP" vmdk info --json o-sparse-$size.vmdk | python3 -c 'import json,sys; print(json.load(sys.stdin)["capacity"])')" = $size ] \
    || fail "capacity of $size"
  echo "ok: $size bytes"
done

# Over 2 TiB: ours, written by qemu and by us.
"$VMBACKUP" vmdk create big.vmdk --size 3T
far=$((2560 * 1024 * 1024 * 1024 + 4096))   # 2.5 TiB + 4 KiB: straddles two grains
qemu-io -f vmdk -c "write -P 0x44 $far 64k" big.vmdk >/dev/null
"$VMBACKUP" vmdk write big.vmdk --offset 3T --length 0 --pattern 0 2>/dev/null || true
"$VMBACKUP" vmdk write big.vmdk --offset $((far + 1048576)) --length 1000 --pattern 0x45
qemu-img check big.vmdk >/dev/null || fail "qemu-img check big.vmdk"
qemu-io -f vmdk -c "read -P 0x44 $far 64k" -c "read -P 0x45 $((far + 1048576)) 1000" big.vmdk | grep -q 'read 1000/1000' \
  || fail "qemu does not read back our write past 2 TiB"
# (qemu-img map walks all 3 TiB for half a minute; our map is checked against what was written.)
expect_runs() {
  "$VMBACKUP" vmdk map --json "$1" | python3 -c '
import json, sys
runs = [(r["offset"], r["length"]) for r in json.load(sys.stdin)]
want = [tuple(int(x) for x in p.split("+")) for p in sys.argv[1:]]
sys.exit(0 if runs == want else "map %s != %s" % (runs, want))' "${@:2}" || fail "map of $1"
}
expect_runs big.vmdk "$((far - 4096))+131072" "$((far + 1048576 - 4096))+65536"
"$VMBACKUP" vmdk cat big.vmdk --offset $far --length 64K | cmp - <(head -c 65536 /dev/zero | tr '\0' '\104') \
  || fail "cat past 2 TiB"
[ "$(stat -c %b big.vmdk)" -lt 20000 ] || fail "big.vmdk uses too much space"
# qemu's own > 2 TiB sparse.
qemu-img create -q -f vmdk qbig.vmdk 3T
qemu-io -f vmdk -c "write -P 0x55 $far 1M" qbig.vmdk >/dev/null
expect_runs qbig.vmdk "$((far - 4096))+$((1048576 + 65536))"
"$VMBACKUP" vmdk cat qbig.vmdk --offset $far --length 1M | cmp - <(head -c 1048576 /dev/zero | tr '\0' '\125') \
  || fail "cat of qemu's 3 TiB disk"
echo "ok: 3 TiB sparse"
