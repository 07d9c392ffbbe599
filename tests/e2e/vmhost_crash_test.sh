#!/usr/bin/env bash
# SIGKILL during a snapshot delete (while its merge runs), then consolidate: the current state
# and the remaining snapshot equal what they were, and qemu-img check is clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img python3 timeout
H=(${VMHOST:-$(dirname "$VMBACKUP")/vmhost} --datastore "$SCRATCH/ds")
"${H[@]}" init
kills=0
for trial in 1 2 3 4 5 6; do
  vm=crash$trial
  "${H[@]}" vm create $vm --disk 96M
  "${H[@]}" vm power-on $vm
  "${H[@]}" disk write $vm 0 --offset 0 --length 32M --pattern 0x11
  "${H[@]}" snapshot create $vm keep
  "${H[@]}" disk write $vm 0 --offset 1M --length 1M --pattern 0x33
  "${H[@]}" snapshot create $vm victim
  "${H[@]}" disk write $vm 0 --offset 8M --length 80M --pattern 0x22   # the delta to merge
  "${H[@]}" disk read $vm 0 > want-current.raw
  "${H[@]}" disk read $vm 0 --snapshot keep > want-keep.raw
  # Deleting 'victim' merges the 80 MiB delta above it into victim's layer; kill it part-way.
  delay=$(python3 -c "print(0.02 * $trial)")
  "${H[@]}" snapshot delete $vm victim & pid=$!
  sleep "$delay"
  if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
  wait $pid 2>/dev/null || true
  "${H[@]}" vm consolidate $vm
  "${H[@]}" disk read $vm 0 | cmp - want-current.raw || fail "trial $trial: current state changed"
  "${H[@]}" disk read $vm 0 --snapshot keep | cmp - want-keep.raw || fail "trial $trial: snapshot 'keep' changed"
  leaf=$("${H[@]}" --json vm info $vm | python3 -c 'import json,sys; print(json.load(sys.stdin)["disks"][0]["file"])')
  qemu-img convert -O raw "$SCRATCH/ds/$vm/$leaf" q.raw
  cmp q.raw want-current.raw || fail "trial $trial: qemu-img reads something else"
  for f in "$SCRATCH"/ds/$vm/*-0*.vmdk; do
    case $f in *-ctk.vmdk) continue ;; esac
    qemu-img check -q "$f" || fail "trial $trial: qemu-img check $f"
  done
  # Killed before the .vmsd changed, the snapshot is still there: then the delete runs again.
  names=$("${H[@]}" --json vm info $vm | python3 -c '
import json, sys
v = json.load(sys.stdin)
assert not v["problems"], v["problems"]
print(" ".join(s["name"] for s in v["snapshots"]))') || fail "trial $trial: state after consolidate"
  case "$names" in
    "keep") ;;
    "keep victim") "${H[@]}" snapshot delete $vm victim ;;
    *) fail "trial $trial: snapshots after consolidate: $names" ;;
  esac
  "${H[@]}" disk read $vm 0 | cmp - want-current.raw || fail "trial $trial: current state changed"
  [ "$("${H[@]}" --json snapshot list $vm | python3 -c 'import json,sys; print([s["name"] for s in json.load(sys.stdin)])')" = "['keep']" ] \
    || fail "trial $trial: 'victim' survived its delete"
  "${H[@]}" vm power-off $vm
  "${H[@]}" vm delete $vm
done
[ $kills -gt 0 ] || fail "no delete was killed in flight"
echo "ok: $kills of 6 deletes killed mid-way, every state recovered"
