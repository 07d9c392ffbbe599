#!/usr/bin/env bash
# The libvirt driver end to end against libvirtd and QEMU (TCG): a domain with no OS and two
# qcow2 disks that the running QEMU writes itself (HMP qemu-io), as in RECIPES.md §6.
# - a full and incrementals while the "guest" writes: each point holds exactly what the disk
#   held when its job began (vda: a prefix of a write sequence; vdb: a known image);
# - an incremental after a libvirtd restart;
# - fulls with their reasons after a checkpoint deleted behind our back, a QEMU crash (the
#   bitmaps never reach the image), a bitmap removed in QEMU, the domain defined anew, and a
#   disk resize; another tool's checkpoint changes nothing;
# - a killed backup leaves a job and scratch files that the next run ends and removes; a killed
#   in-place restore is taken over by the next run, and no qemu-nbd of the dead run survives it;
# - a powered-off domain's incremental from its qcow2 bitmap, through qemu-nbd;
# - an in-place restore that writes only what changed, one killed and run again, and restores
#   to new domains (qcow2, raw);
# - a raw-disk domain, whose incrementals store only what changed (its patterns, 0xe5 and
#   0xe6, are none of the writer's 1..160, which the repository holds already).
source "$(dirname "$0")/functions.sh"
libvirt_setup
export VMBACKUP_REPO=$SCRATCH/repo
"$VMBACKUP" init >/dev/null
D=vmbt-lv-$$
RUNROOT=${VMBACKUP_LIBVIRT_RUN_DIR:-/var/lib/vmbackup/libvirt}
SRC=(--source qemu:///system)
qemu-img create -q -f qcow2 a.qcow2 48M
qemu-img create -q -f qcow2 b.qcow2 32M
truncate -s 32M exp-b.raw
define_domain "$D" a.qcow2 b.qcow2
virsh start "$D" >/dev/null || fail "start $D"
UUID=$(virsh domuuid "$D")
RUN=$RUNROOT/$UUID

# wb PATTERN OFFSET LENGTH: the running QEMU writes vdb, and the expected image follows.
wb() {
  hmp "$D" 1 "write -P $1 $2 $3"
  qemu-io -f raw -c "write -P $1 $2 $3" exp-b.raw >/dev/null
}
backup() {  # backup N [ARGS...]: the report in bN.json
  local n=$1
  shift
  "$VMBACKUP" backup "${SRC[@]}" --vm "$D" --no-progress --json --allow-crash-consistent "$@" \
    > "b$n.json" 2> "b$n.err" || fail "backup $n: $(cat "b$n.err")"
}
mode() { json_field "b$1.json" "j['disks'][$2]['mode']"; }
# (No `... | grep -q` here: grep -q ends first, the writer dies of SIGPIPE, and pipefail then
# fails the pipeline at random.)
# step N PATTERN OFFSET: the running QEMU writes 64 KiB of PATTERN into vdb, then backup N;
# exp-b.N.raw is vdb as that point must hold it.
step() {
  wb "$2" "$3" 64k
  cp exp-b.raw "exp-b.$1.raw"
  backup "$1"
}
# want N MODE [REASON]: backup N read vdb as MODE (a full naming REASON), and its point's vdb is
# exp-b.N.raw.
want() {
  [ "$(mode "$1" 1)" = "$2" ] || fail "backup $1: vdb is not $2: $(cat "b$1.json")"
  [ -z "${3:-}" ] || reason "$1" 1 | grep -F "$3" >/dev/null || fail "backup $1: reason '$(reason "$1" 1)' lacks '$3'"
  check_b "$1"
}
reason() { json_field "b$1.json" "j['disks'][$2]['full_reason']"; }
our_bitmaps() {  # DOMAIN: the names of vmbackup's bitmaps QEMU holds on any qcow2 node, sorted
  virsh qemu-monitor-command "$1" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' \
    | python3 -c "
import json, sys
names = {b['name'] for n in json.load(sys.stdin)['return'] if n['drv'] == 'qcow2'
         for b in n.get('dirty-bitmaps', []) if b['name'].startswith('vmbackup-')}
print('\n'.join(sorted(names)))"
}
point() { json_field "b$1.json" "j['id']"; }
check_b() {  # check_b N: point N's vdb equals exp-b.N.raw
  "$VMBACKUP" restore "$(point "$1")" --to-file "r$1b.raw" --disk 2001 >/dev/null || fail "restore $1"
  cmp -s "r$1b.raw" "exp-b.$1.raw" || fail "point $1: vdb differs from the disk at its backup"
  rm -f "r$1b.raw"
}

echo "== full and incrementals while the guest writes"
cat > writer.sh <<SH
for k in \$(seq 1 160); do
  virsh qemu-monitor-command $D --hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \\"write -P \$k \$((k * 262144)) 64k\\"" >/dev/null
done
SH
wb 0x11 0 1M
bash writer.sh > writer.log 2>&1 &
W=$!
cp exp-b.raw exp-b.1.raw
backup 1
step 2 0x22 4M
wb 0x23 8M 128k
cp exp-b.raw exp-b.3.raw
backup 3
wait $W || fail "the writer: $(cat writer.log)"
cp exp-b.raw exp-b.4.raw
backup 4
[ "$(mode 1 0) $(mode 1 1)" = "full full" ] || fail "backup 1: $(cat b1.json)"
for n in 2 3 4; do
  [ "$(mode $n 0) $(mode $n 1)" = "incremental incremental" ] || fail "backup $n: $(cat b$n.json)"
  [ "$(json_field b$n.json "j['disks'][0]['transport']")" = nbd ] || fail "backup $n transport"
done
[ "$(json_field b2.json "j['disks'][1]['bytes_read']")" = 65536 ] || fail "backup 2 read more than vdb's change: $(cat b2.json)"
[ "$(json_field b3.json "j['disks'][1]['bytes_read']")" = 131072 ] || fail "backup 3 read more than vdb's change"
raws=()
for n in 1 2 3 4; do
  check_b $n
  "$VMBACKUP" restore "$(point $n)" --to-file "r${n}a.raw" --disk 2000 >/dev/null || fail "restore $n vda"
  raws+=("r${n}a.raw")
done
check_guest_points "${raws[@]}"
rm -f "${raws[@]}"
[ -z "$(virsh domjobinfo "$D" | grep -i backup)" ] || fail "a backup job is left"
[ ! -e "$RUN" ] || fail "files are left in $RUN: $(ls -A "$RUN")"
[ "$(virsh checkpoint-list "$D" --name | grep -c .)" -le 2 ] || fail "checkpoints pile up: $(virsh checkpoint-list "$D" --name)"

echo "== an incremental after a libvirtd restart"
old=$(pidof libvirtd)
kill "$old"
for _ in $(seq 600); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
"$E2E_DIR/../libvirt/libvirtd-up" || fail "libvirtd did not come back"
step 5 0x31 12M
want 5 incremental

echo "== a checkpoint deleted behind our back"
virsh checkpoint-delete "$D" "$(json_field b5.json "j['disks'][1]['change_id']")" >/dev/null
step 6 0x41 13M
want 6 full "libvirt has no checkpoint"

echo "== a killed backup, then the next run cleans up"
caught=0
for try in 1 2 3 4 5; do
  "$VMBACKUP" backup "${SRC[@]}" --vm "$D" --no-progress --allow-crash-consistent \
    --reads-in-flight 1 > killed.out 2>&1 &
  k=$!
  for _ in $(seq 5000); do [ -S "$RUN/nbd.sock" ] && break; kill -0 $k 2>/dev/null || break; sleep 0.002; done
  kill -STOP $k 2>/dev/null || true
  if virsh domjobinfo "$D" 2>/dev/null | grep Backup >/dev/null; then caught=1; fi
  kill -9 $k 2>/dev/null || true
  wait $k 2>/dev/null || true
  [ $caught = 1 ] && break
done
[ $caught = 1 ] || fail "could not kill a backup while its job ran"
ls "$RUN" | grep scratch >/dev/null || fail "the killed run left no scratch files to clean (test broken?)"
step 7 0x51 14M
grep -q "left by an interrupted backup" b7.json || fail "no note of the cleanup: $(cat b7.json)"
want 7 incremental
[ -z "$(virsh domjobinfo "$D" | grep -i backup)" ] || fail "a backup job is left after the kill"
[ ! -e "$RUN" ] || fail "files are left in $RUN after the kill: $(ls -A "$RUN")"
cps=$(virsh checkpoint-list "$D" --name | grep -c .)
[ "$cps" -le 2 ] || fail "the killed run's checkpoint stays: $(virsh checkpoint-list "$D" --name)"
virsh checkpoint-list "$D" --name | grep -x "$(json_field b7.json "j['disks'][1]['change_id']")" >/dev/null \
  || fail "the last point's checkpoint is gone"

echo "== a QEMU crash: the bitmaps never reach the images"
hmp "$D" 1 flush  # what a guest does before it counts a write as done
kill -9 "$(pgrep -f "guest=$D,")"
for _ in $(seq 100); do [ "$(virsh domstate "$D")" = "shut off" ] && break; sleep 0.1; done
virsh start "$D" >/dev/null
step 8 0x61 15M
want 8 full "libvirt cannot start an incremental from checkpoint"
step 9 0x62 16M
want 9 incremental

echo "== a bitmap removed behind libvirt's back (its checkpoint stays)"
cp9=$(json_field b9.json "j['disks'][1]['change_id']")
node=$(virsh qemu-monitor-command "$D" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' \
  | python3 -c "
import json, sys
for n in json.load(sys.stdin)['return']:
    if n['drv'] == 'qcow2' and n['file'].endswith('/b.qcow2'):
        print(n['node-name']); break")
[ -n "$node" ] || fail "no qcow2 node for b.qcow2"
virsh qemu-monitor-command "$D" "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"$node\",\"name\":\"$cp9\"}}" \
  >/dev/null || fail "remove bitmap $cp9"
step 9a 0x64 18M
want 9a full "libvirt cannot start an incremental from checkpoint $cp9"
virsh checkpoint-list "$D" --name | grep -x "$cp9" >/dev/null && fail "the broken checkpoint stays"

echo "== the domain defined anew (libvirt forgets its checkpoints)"
virsh dumpxml --inactive "$D" > redefine.xml
virsh destroy "$D" >/dev/null  # a running domain would keep its checkpoints while it runs
virsh undefine "$D" --checkpoints-metadata >/dev/null
virsh define redefine.xml >/dev/null || fail "define again"
virsh start "$D" >/dev/null
# The images kept the old checkpoints' bitmaps, which QEMU loaded and now updates on every write.
stale=$(our_bitmaps "$D")
[ -n "$stale" ] || fail "no bitmap came back from the images: the case below tests nothing"
[ -z "$(virsh checkpoint-list "$D" --name | grep .)" ] || fail "libvirt kept checkpoints"
step 9c 0x65 19M
want 9c full "libvirt has no checkpoint"
# The job's hygiene removed them: what QEMU keeps now is exactly the new checkpoint's.
[ "$(our_bitmaps "$D")" = "$(virsh checkpoint-list "$D" --name | grep . | sort -u)" ] \
  || fail "stale bitmaps stay: $(our_bitmaps "$D" | tr '\n' ' ') (were: $(echo $stale))"

echo "== another tool's checkpoint is left alone and breaks nothing"
virsh checkpoint-create-as "$D" other-tool >/dev/null || fail "a foreign checkpoint"
step 9b 0x63 17M
want 9b incremental
virsh checkpoint-list "$D" --name | grep -x other-tool >/dev/null || fail "the foreign checkpoint was deleted"
virsh checkpoint-delete "$D" other-tool >/dev/null

echo "== a resized disk"
virsh blockresize "$D" vdb 40M >/dev/null
truncate -s 40M exp-b.raw
step 10 0x71 36M
want 10 full resized

echo "== powered off: an incremental from the qcow2's bitmap"
virsh destroy "$D" >/dev/null
qemu-io -f qcow2 -c "write -P 0x81 20M 64k" b.qcow2 >/dev/null
qemu-io -f raw -c "write -P 0x81 20M 64k" exp-b.raw >/dev/null
cp exp-b.raw exp-b.11.raw
# A bitmap named like ours that no checkpoint names (a domain defined anew while off): the
# offline job's hygiene removes it, and leaves the checkpoint's.
qemu-img bitmap --add b.qcow2 vmbackup-20200101T000000Z-000000 || fail "qemu-img bitmap --add"
backup 11
info=$(qemu-img info --output=json b.qcow2)
grep -q '"vmbackup-20200101T000000Z-000000"' <<<"$info" && fail "the offline job left a stale bitmap"
grep -q "\"$(json_field b10.json "j['disks'][1]['change_id']")\"" <<<"$info" \
  || fail "the offline job removed the checkpoint's bitmap: $info"
[ "$(mode 11 1)" = incremental ] || fail "offline: $(cat b11.json)"
[ "$(json_field b11.json "j['disks'][1]['transport']")" = san ] || fail "offline transport"
[ "$(json_field b11.json "j['disks'][1]['bytes_read']")" = 65536 ] || fail "offline read too much"
check_b 11

echo "== in place: only what changed since the point"
qemu-io -f qcow2 -c "write -P 0x91 24M 64k" b.qcow2 >/dev/null
"$VMBACKUP" restore "$(point 11)" --in-place "${SRC[@]}" --transport san --json > ip.json \
  || fail "in-place restore: $(cat ip.json)"
[ "$(json_field ip.json "j['disks'][1]['mode']")" = "changed areas" ] || fail "in place: $(cat ip.json)"
# Point 11 was taken offline and keeps point 10's checkpoint: its bitmap also holds the 64 KiB
# written before point 11, so 128 KiB are written (still not the 40 MiB disk).
[ "$(json_field ip.json "j['disks'][1]['bytes_planned']")" = 131072 ] || fail "in place: $(cat ip.json)"
[ "$(json_field ip.json "j['disks'][0]['bytes_planned']")" = 0 ] || fail "in place vda: $(cat ip.json)"
qemu-img compare -q -f qcow2 -F raw b.qcow2 exp-b.11.raw || fail "in place: vdb is not point 11"
[ -z "$(virsh checkpoint-list "$D" --name | grep .)" ] || fail "checkpoints survive an in-place restore"
backup 12
[ "$(mode 12 1)" = full ] || fail "the backup after an in-place restore: $(cat b12.json)"

echo "== an in-place restore killed, then run again"
caught=0
for try in 1 2 3 4 5; do
  "$VMBACKUP" restore "$(point 10)" --in-place "${SRC[@]}" --transport san > killed.out 2>&1 &
  k=$!
  for _ in $(seq 5000); do [ -e "$RUN/snapshot" ] && break; kill -0 $k 2>/dev/null || break; sleep 0.002; done
  kill -9 $k 2>/dev/null || true
  wait $k 2>/dev/null || true
  [ -e "$RUN/snapshot" ] && { caught=1; break; }
done
[ $caught = 1 ] || fail "could not kill an in-place restore while it ran: $(cat killed.out)"
expect_failure 1 "unfinished in-place restore" -- "$VMBACKUP" backup "${SRC[@]}" --vm "$D" --no-progress
"$VMBACKUP" restore "$(point 10)" --in-place "${SRC[@]}" --transport san --json > ip2.json \
  || fail "the in-place restore run again: $(cat ip2.json)"
grep -q "took over snapshot vmbackup-restore" ip2.json || fail "no take-over: $(cat ip2.json)"
qemu-img compare -q -f qcow2 -F raw b.qcow2 exp-b.10.raw || fail "in place again: vdb is not point 10"
[ ! -e "$RUN" ] || fail "files are left in $RUN after the restore: $(ls -A "$RUN")"
[ -z "$(pgrep -f "qemu-nbd.*$SCRATCH/")" ] || fail "qemu-nbd is left: $(pgrep -af "qemu-nbd.*$SCRATCH/")"

echo "== to a new domain"
N=vmbt-lv-new-$$
LIBVIRT_DOMAINS+=("$N")
"$VMBACKUP" restore "$(point 10)" --to-vm --name "$N" "${SRC[@]}" --disk-dir "$SCRATCH" --json \
  > new.json || fail "restore to a new domain: $(cat new.json)"
[ "$(virsh domuuid "$N")" != "$UUID" ] || fail "the new domain kept the uuid"
virsh dumpxml "$N" | grep "$SCRATCH/$N-vdb.qcow2" >/dev/null || fail "the new domain's disk: $(virsh dumpxml "$N")"
qemu-img compare -q -f qcow2 -F raw "$SCRATCH/$N-vdb.qcow2" exp-b.10.raw || fail "the new domain's vdb"
[ "$(virsh dumpxml "$N" | grep -c 'mac address')" = 1 ] || fail "the new domain has no MAC"
[ "$(virsh dumpxml "$N" | grep 'mac address')" != "$(virsh dumpxml "$D" | grep 'mac address')" ] \
  || fail "the new domain kept the MAC"
virsh start "$N" >/dev/null || fail "the new domain does not start"
virsh destroy "$N" >/dev/null
expect_failure 1 "already exists" -- "$VMBACKUP" restore "$(point 10)" --to-vm --name "$N" "${SRC[@]}"
N2=vmbt-lv-raw-new-$$
LIBVIRT_DOMAINS+=("$N2")
"$VMBACKUP" restore "$(point 10)" --to-vm --name "$N2" "${SRC[@]}" --disk-dir "$SCRATCH" \
  --disk-format raw >/dev/null || fail "restore to a new domain with raw disks"
virsh dumpxml "$N2" | grep "type='raw'" >/dev/null || fail "not raw: $(virsh dumpxml "$N2")"
cmp -s "$SCRATCH/$N2-vdb.img" exp-b.10.raw || fail "the raw new domain's vdb"
# Without --disk-dir the disks go to libvirt's pool, whatever folder the saved definition names.
N3=vmbt-lv-pool-$$
LIBVIRT_DOMAINS+=("$N3")
"$VMBACKUP" restore "$(point 10)" --to-vm --name "$N3" "${SRC[@]}" >/dev/null || fail "restore to the pool"
pool=/var/lib/libvirt/images
virsh dumpxml "$N3" | grep "$pool/$N3-vdb.qcow2" >/dev/null || { rm -f "$pool/$N3"-*; fail "not in $pool"; }
qemu-img compare -q -f qcow2 -F raw "$pool/$N3-vdb.qcow2" exp-b.10.raw || { rm -f "$pool/$N3"-*; fail "pool vdb"; }
rm -f "$pool/$N3"-*


echo "== a raw disk: incrementals store only what changed"
R=vmbt-lv-raw-$$
truncate -s 32M r.img
qemu-io -f raw -c "write -P 0xe5 1M 1M" r.img >/dev/null
define_domain "$R" r.img
virsh start "$R" >/dev/null
"$VMBACKUP" backup "${SRC[@]}" --vm "$R" --no-progress --json > r1.json || fail "raw full"
hmp "$R" 0 "write -P 0xe6 8M 64k"
"$VMBACKUP" backup "${SRC[@]}" --vm "$R" --no-progress --json > r2.json || fail "raw inc"
json_field r2.json "j['disks'][0]['full_reason']" | grep "cannot hold a persistent dirty bitmap" >/dev/null \
  || fail "raw: $(cat r2.json)"
[ "$(json_field r2.json "j['disks'][0]['bytes_new']")" = 65536 ] || fail "raw stored more"
virsh destroy "$R" >/dev/null
"$VMBACKUP" restore "$(json_field r2.json "j['id']")" --to-file rr.raw --disk 2000 >/dev/null
cmp -s rr.raw r.img || fail "raw point differs"
echo "libvirt: all passed"
