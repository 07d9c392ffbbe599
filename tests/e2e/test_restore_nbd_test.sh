#!/usr/bin/env bash
# Restore tests without a hypervisor (test-restore --fsck): a point of a disk with FAT, ext4, XFS
# and NTFS partitions passes, each file system checked in libguestfs's appliance over the
# point's exports; a point whose ext4 was damaged on purpose before the backup (a folder's inode
# cleared, its entry left) fails, naming the partition and e2fsck's finding. Each result is
# recorded on its point: `list` shows "tested ok" or "tested FAILED" with the date, in text and
# JSON, also after the catalog is deleted. Nothing is left running. Bad requests are refused
# before anything starts. (The boot and the script: libvirt_guest_test.)
source "$(dirname "$0")/functions.sh"
source "$E2E_DIR/fs_disk.sh"
requires sgdisk mkfs.vfat mcopy mkfs.ext4 mkfs.xfs mkntfs ntfscp debugfs python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo

backup_fs_disk "$V" "$H" good || fail "the good disk and its backup"
FS_DISK_DAMAGE=1 backup_fs_disk "$V" "$H" bad || fail "the damaged disk and its backup"
good=$("$V" --json list --vm good | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
bad=$("$V" --json list --vm bad | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

# 1. Refused before anything starts.
expect_failure 2 "needs --boot" -- "$V" test-restore "$good" --script /etc/hostname
expect_failure 1 "not taken through libvirt" -- "$V" test-restore "$good" --boot
expect_failure 1 "No such file" -- "$V" test-restore "$good" --fsck --script /nonexistent --boot

# 2. The good point passes: four file systems, each with its checker.
"$V" --json test-restore "$good" --fsck > good.json 2> good.err || fail "test-restore of the good point: $(cat good.err)"
python3 - good.json <<'PY' || fail "good point: $(cat good.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is True, j
types = sorted(c["target"].split("(")[1].rstrip(")") for c in j["checks"])
assert types == ["ext4", "ntfs", "vfat", "xfs"], types
assert all(c["ok"] and c["check"] == "fsck" for c in j["checks"]), j["checks"]
assert all(c["target"].startswith("disk 2000 /dev/sda") for c in j["checks"]), j["checks"]
assert j["summary"] == "fsck of 4 file systems: ok", j["summary"]
PY

# 3. The damaged point fails, naming the partition and the finding; exit code 1.
set +e
"$V" --json test-restore "$bad" > bad.json 2> bad.err  # --fsck is the default
rc=$?
set -e
[ $rc -eq 1 ] || fail "the damaged point: exit $rc, not 1: $(cat bad.err)"
grep -q "failed: fsck disk 2000 /dev/sda2 (ext4): e2fsck found" bad.err || fail "no reason: $(cat bad.err)"
python3 - bad.json <<'PY' || fail "damaged point: $(cat bad.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is False, j
failed = [c for c in j["checks"] if not c["ok"]]
assert [c["target"] for c in failed] == ["disk 2000 /dev/sda2 (ext4)"], failed
assert "e2fsck found" in failed[0]["detail"], failed
assert len([c for c in j["checks"] if c["ok"]]) == 3, j["checks"]  # the others are fine
PY

# 4. list shows both results, from the repository: also after the catalog is gone.
today=$(date -u +%F)
for pass in 1 2; do
  "$V" list > list.txt
  grep -E "^$good .*tested ok $today" list.txt >/dev/null || fail "list (pass $pass): $(cat list.txt)"
  grep -E "^$bad .*tested FAILED $today" list.txt >/dev/null || fail "list (pass $pass): $(cat list.txt)"
  rm -rf "${VMBACKUP_CACHE_DIR:?}"/*
done
"$V" --json list > list.json
python3 - list.json "$good" "$bad" <<'PY' || fail "list --json: $(cat list.json)"
import json, sys
j = {p["id"]: p for p in json.load(open(sys.argv[1]))}
g, b = j[sys.argv[2]]["tested"], j[sys.argv[3]]["tested"]
assert g["ok"] is True and g["summary"] == "fsck of 4 file systems: ok", g
assert b["ok"] is False and "e2fsck found" in b["summary"], b
PY
# One result per test, in the repository; forget takes a point's results along.
[ "$(ls "$VMBACKUP_REPO/tests" | wc -l)" = 2 ] || fail "results: $(ls "$VMBACKUP_REPO/tests")"
"$V" forget "$bad" > /dev/null || fail "forget"
[ "$(ls "$VMBACKUP_REPO/tests" | grep -c "^$bad")" = 0 ] || fail "the forgotten point's result stays"

# 5. Nothing left: no export, no appliance, no run folder.
! pgrep -f "nbdkit.*$VMBACKUP_REPO" >/dev/null || fail "an export is left"
! ls -d /tmp/vmbackup-restore-test-* 2>/dev/null | grep -q . ||
  fail "run folders left: $(ls -d /tmp/vmbackup-restore-test-*)"
echo "test-restore: all passed"
