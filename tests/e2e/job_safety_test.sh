#!/usr/bin/env bash
# Jobs that overlap or die: one job per VM (a second fails naming the first, or waits with
# --lock-wait); an in-place restore killed mid-write leaves a VM that says so, cannot be powered
# on or backed up, and is finished by a rerun that reuses its snapshot, after which the next
# backup reads the disk whole; a restore to a new VM killed mid-write leaves a VM that cannot be
# powered on, which the rerun replaces.
source "$(dirname "$0")/functions.sh"
requires python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo VMBACKUP_LOCK_DIR=$SCRATCH/locks
SRC=vmhost://$SCRATCH/ds

field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
snapshot_count() { grep -c '^snapshot[0-9]*\.uid' "ds/$1/$1.vmsd" 2>/dev/null || true; }
wait_for() {  # FILE PATTERN: until FILE holds PATTERN (no lock, no python: fast under load)
  for _ in $(seq 1 5000); do
    grep -s -- "$2" "$1" >/dev/null && return 0
    sleep 0.002
  done
  fail "timed out waiting for '$2' in $1"
}

"$H" init >/dev/null
"$H" vm create web --disk 512M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 384M /dev/urandom > rand
"$H" disk write web 0 --offset 64M --from rand >/dev/null
"$V" init >/dev/null
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "first backup"
P1=$(field b1.json 'j["id"]')
"$H" disk read web 0 --offset 0 --length 512M > p1.raw

# 1. Two jobs on one VM: the second fails (exit 3) naming the first, whose point is whole;
#    with --lock-wait it waits for it instead.
head -c 384M /dev/urandom > rand && "$H" disk write web 0 --offset 64M --from rand >/dev/null
"$V" backup --source "$SRC" --vm web --json > b2.json 2>b2.err &
first=$!
wait_for ds/web/web.vmsd 'vmbackup-'
rc=0
"$V" backup --source "$SRC" --vm web >second.out 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "a second backup of a busy VM exited $rc: $(cat second.out)"
grep -q "VM web is busy: a backup job (pid $first" second.out || fail "the running job was not named: $(cat second.out)"
wait $first || fail "the first backup failed: $(cat b2.err)"
grep -q "left by an interrupted" b2.json && fail "a live job's snapshot was taken for a leftover"
P2=$(field b2.json 'j["id"]')
"$H" disk read web 0 --offset 0 --length 512M > p2.raw
"$V" restore "$P2" --to-file r2.raw >/dev/null || fail "restore of the first job's point"
cmp -s r2.raw p2.raw || fail "the first job's point is not the disk"
rm -f r2.raw
head -c 64M /dev/urandom > small && "$H" disk write web 0 --offset 0 --from small >/dev/null
"$V" backup --source "$SRC" --vm web >/dev/null 2>&1 &
first=$!
wait_for ds/web/web.vmsd 'vmbackup-'
"$V" backup --source "$SRC" --vm web --lock-wait 120 --json > waited.json || fail "--lock-wait"
wait $first || fail "the first of two waiting backups failed"
[ "$(snapshot_count web)" = 0 ] || fail "snapshots left after two jobs"

# 2. An in-place restore killed while it writes.
"$H" vm power-off web >/dev/null
"$V" restore "$P1" --in-place --source "$SRC" >ip.out 2>&1 &
pid=$!
wait_for ds/web/web.vmsd 'vmbackup-restore'
wait_for ds/web/web.vmx 'powerOnBlocked'
sleep 0.2
kill -KILL $pid
wait $pid 2>/dev/null || true
if grep -q "restored point" ip.out; then fail "the in-place restore finished before the kill"; fi
"$H" vm info web > info.txt
grep -q "MAY NOT BE POWERED ON: .*in-place restore of point $P1 did not finish" info.txt \
  || fail "vm info does not say the VM is mid-restore: $(cat info.txt)"
"$H" vm power-on web >/dev/null 2>err.txt && fail "a VM with mixed disks powered on"
grep -q "may not be powered on" err.txt || fail "power-on: $(cat err.txt)"
"$V" backup --source "$SRC" --vm web >/dev/null 2>err.txt && fail "a VM with mixed disks was backed up"
grep -q "restore .* --in-place" err.txt || fail "the backup does not name the way out: $(cat err.txt)"
# The rerun takes the snapshot over (never a second one) and finishes.
"$V" restore "$P1" --in-place --source "$SRC" --json > ip2.json || fail "the rerun of the in-place restore"
field ip2.json 'j["notes"]' | grep -q "took over snapshot" || fail "the rerun did not reuse the snapshot: $(cat ip2.json)"
[ "$(snapshot_count web)" = 0 ] || fail "a restore snapshot stayed after a successful rerun"
"$H" disk read web 0 --offset 0 --length 512M | cmp -s - p1.raw || fail "the rerun left the disk unlike P1"
"$H" vm power-on web >/dev/null || fail "the VM does not power on after the rerun"
"$V" backup --source "$SRC" --vm web --json > after.json || fail "backup after the in-place restore"
[ "$(field after.json 'j["disks"][0]["mode"]')" = full ] || fail "the backup after an in-place restore is not a full"
"$V" backup --source "$SRC" --vm web --audit-cbt 100 --json > audit.json || fail "audit after the restore"
"$V" restore "$(field audit.json 'j["id"]')" --to-file a.raw >/dev/null || fail "restore the audited point"
"$H" disk read web 0 --offset 0 --length 512M | cmp -s - a.raw || fail "the point after the restore is not the disk"
rm -f a.raw

# 3. A restore to a new VM killed while it writes.
"$V" restore "$P2" --to-vm --name copy --source "$SRC" >nv.out 2>&1 &
pid=$!
wait_for ds/copy/copy.vmsd 'vmbackup-restore'
sleep 0.2
kill -KILL $pid
wait $pid 2>/dev/null || true
if grep -q "restored point" nv.out; then fail "the new-VM restore finished before the kill"; fi
"$H" vm info copy > info.txt
grep -q "MAY NOT BE POWERED ON: vmbackup: incomplete restore" info.txt || fail "vm info: $(cat info.txt)"
"$H" vm power-on copy >/dev/null 2>&1 && fail "a half-restored VM powered on"
"$V" restore "$P2" --to-vm --name copy --source "$SRC" --verify --json > nv2.json || fail "the rerun"
field nv2.json 'j["notes"]' | grep -q "replaced VM copy" || fail "the rerun did not replace it: $(cat nv2.json)"
"$H" disk read copy 0 --offset 0 --length 512M | cmp -s - p2.raw || fail "the new VM's disk"
"$H" vm power-on copy >/dev/null || fail "the restored VM does not power on"
# A VM of that name that is not an interrupted restore is never replaced.
"$V" restore "$P2" --to-vm --name copy --source "$SRC" >/dev/null 2>err.txt && fail "an existing VM was replaced"
grep -q "already exists" err.txt || fail "$(cat err.txt)"
echo "ok: job safety"
