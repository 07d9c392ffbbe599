#!/usr/bin/env bash
# Quiesce through qemu-guest-agent with a real guest: a Debian guest (built once and cached by
# ../shared/tools/guest/make-guest, booted under TCG by guest-up) writes a file that stays in
# its page cache; a quiesced backup freezes the guest's file systems (which flushes them), so
# the restored disk holds the file, and the point says "filesystem". The agent's own
# guest-fsfreeze-status is "thawed" afterwards: the freeze ended. A domain without an agent
# cannot be quiesced: the backup fails naming the agent, or with --allow-crash-consistent is
# crash-consistent and says so. (Control, run by hand on 2026-11-30: the same write followed at
# once by a backup without --quiesce is not in the point.) The point then runs as an instant
# recovery (export restart, migrate), and test-restore boots it in a sandbox, checks its file
# system and runs a script in it; a copy whose file system was damaged before its backup fails,
# naming e2fsck's finding, and a killed test-restore's sandbox is removed by the next.
source "$(dirname "$0")/functions.sh"
libvirt_setup
requires debootstrap python3 debugfs partx
G=$SHARED_TOOLS/guest
export VMBACKUP_REPO=$SCRATCH/repo
"$VMBACKUP" init >/dev/null
D=vmbt-guest-$$
LIBVIRT_DOMAINS+=("$D")
qemu-img create -q -f qcow2 data.qcow2 16M
"$G/make-guest" > make-guest.log 2>&1 || fail "make-guest: $(tail -5 make-guest.log)"
"$G/guest-up" --tiny --name "$D" --disk "$SCRATCH/data.qcow2" > up.log 2> up.err \
  || fail "guest-up: $(tail -5 up.err)"
trap '"$G/guest-down" "$D" >/dev/null 2>&1 || true; libvirt_cleanup; rm -rf "$SCRATCH"' EXIT

# A marker only the page cache holds (no sync), then at once a quiesced backup.
marker="vmbackup-quiesce-marker-$$-$RANDOM"
"$G/guest-agent" "$D" sh "echo $marker > /root/quiesce.txt" >/dev/null || fail "write in the guest"
"$VMBACKUP" backup --source qemu:///system --vm "$D" --quiesce --no-progress --json > q.json \
  2> q.err || fail "quiesced backup: $(cat q.err)"
[ "$(json_field q.json "j['consistency']")" = filesystem ] || fail "not quiesced: $(cat q.json)"
[ "$("$G/guest-agent" "$D" fsstatus)" = thawed ] || fail "the guest stays frozen"
"$VMBACKUP" restore "$(json_field q.json "j['id']")" --to-file vda.raw --disk 2000 >/dev/null \
  || fail "restore vda"
grep -qa "$marker" vda.raw || fail "the freeze did not flush the guest's file to the point"
# The guest goes on working, and the next backup is an incremental.
"$G/guest-agent" "$D" sh "echo more >> /root/quiesce.txt; sync" >/dev/null || fail "the guest after the backup"
"$VMBACKUP" backup --source qemu:///system --vm "$D" --quiesce --no-progress --json > q2.json \
  2> q2.err || fail "second quiesced backup: $(cat q2.err)"
[ "$(json_field q2.json "j['disks'][0]['mode']")" = incremental ] || fail "second: $(cat q2.json)"

echo "== instant recovery of the guest"
# The original stops (the copy would share its console log); the point boots as a new domain
# whose disks read from the point's exports.
I=vmbt-instant-$$
LIBVIRT_DOMAINS+=("$I")
export VMBACKUP_INSTANT_DIR=$SCRATCH/instant
trap '"$VMBACKUP" instant stop "$I" >/dev/null 2>&1 || true; "$G/guest-down" "$D" >/dev/null 2>&1 || true; libvirt_cleanup; rm -rf "$SCRATCH"' EXIT
virsh destroy "$D" >/dev/null
t0=$(date +%s.%N)
"$VMBACKUP" --json restore "$(json_field q2.json "j['id']")" --instant --to-vm --name "$I" \
  --source qemu:///system --disk-dir "$SCRATCH" > inst.json 2> inst.err || fail "restore --instant: $(cat inst.err)"
for _ in $(seq 600); do "$G/guest-agent" "$I" ping >/dev/null 2>&1 && break; sleep 0.5; done
"$G/guest-agent" "$I" ping >/dev/null 2>&1 || fail "the instant guest's agent does not answer"
echo "FIGURE: restore --instant to a running domain $(json_field inst.json "j['seconds_to_running']") s, to the agent's first answer $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s (TCG)"
"$G/guest-agent" "$I" read /root/quiesce.txt | grep -q "$marker" || fail "the instant guest lacks the point's file"
imarker="written-in-the-instant-guest-$$"
"$G/guest-agent" "$I" sh "echo $imarker > /root/instant.txt; sync" >/dev/null || fail "write in the instant guest"
# The export restarts under the running guest: it goes on reading (files it never read before).
pkill -9 -f "nbdkit -P $SCRATCH/instant/$I/" || fail "no export to kill"
sleep 1
"$VMBACKUP" instant reconnect "$I" >/dev/null || fail "instant reconnect"
"$G/guest-agent" "$I" sh "cat /usr/bin/* > /dev/null && cat /root/instant.txt" > after.txt || fail "the guest after the export's restart"
grep -q "$imarker" after.txt || fail "the guest's file did not survive the export's restart"
# Migrate while it runs; afterwards it needs no repository, and its disk holds its file.
"$VMBACKUP" instant migrate "$I" --disk-dir "$SCRATCH" >/dev/null || fail "instant migrate"
"$G/guest-agent" "$I" ping >/dev/null || fail "the guest stopped answering after the pivot"
! pgrep -f "nbdkit -P $SCRATCH/instant/$I/" >/dev/null || fail "an export still runs after the migration"
"$G/guest-agent" "$I" sh "sync" >/dev/null
virsh destroy "$I" >/dev/null
qemu-img convert -O raw "$SCRATCH/$I-2000.qcow2" migrated.raw
grep -qa "$imarker" migrated.raw || fail "the migrated disk lacks the guest's write"
grep -qa "$marker" migrated.raw || fail "the migrated disk lacks the point's data"

echo "== test-restore: the point boots in a sandbox, its file systems check, a script runs"
# A sandbox a failed run leaves is removed on the way out.
trap 'for n in $(ls "$VMBACKUP_INSTANT_DIR" 2>/dev/null); do "$VMBACKUP" instant stop "$n" >/dev/null 2>&1 || true; done; "$G/guest-down" "$D" >/dev/null 2>&1 || true; libvirt_cleanup; rm -rf "$SCRATCH"' EXIT
# The script runs in the sandboxed guest through its agent: the point's file is there, and the
# guest sees no network interface but lo.
cat > check.sh <<SCRIPT
grep -q "$marker" /root/quiesce.txt || { echo "the point's file is missing" >&2; exit 3; }
[ "\$(ls /sys/class/net)" = lo ] || { echo "a network: \$(ls /sys/class/net)" >&2; exit 4; }
echo sandbox-ok
SCRIPT
"$VMBACKUP" --json test-restore "$(json_field q2.json "j['id']")" --boot --fsck --script check.sh \
  --disk-dir "$SCRATCH" > tr.json 2> tr.err || fail "test-restore of the guest: $(cat tr.err)"
python3 - tr.json <<'PY' || fail "test-restore: $(cat tr.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is True, j
by = {c["check"]: c for c in j["checks"]}
assert [c["target"] for c in j["checks"] if c["check"] == "fsck"] == ["disk 2000 /dev/sda1 (ext4)"], j
assert by["boot"]["ok"] and by["boot"]["target"] == "guest agent", by["boot"]
assert by["script"]["ok"] and "sandbox-ok" in by["script"]["detail"], by["script"]
assert j["summary"] == "fsck of 1 file system, boot, script check.sh: ok", j["summary"]
PY
echo "FIGURE: test-restore --boot: the guest agent answered $(json_field tr.json "[c for c in j['checks'] if c['check'] == 'boot'][0]['seconds']") s after the start (TCG)"
"$VMBACKUP" list | grep -E "^$(json_field q2.json "j['id']") .*tested ok $(date -u +%F)" >/dev/null \
  || fail "list does not show the test: $("$VMBACKUP" list)"
# Nothing of the sandbox is left: no domain, no record, no overlay, no export.
no_sandbox_left() {
  local doms
  doms=$(virsh list --all --name)
  ! grep -q "^vmbackup-test-" <<< "$doms" || fail "a sandbox domain is left: $doms"
  [ -z "$(ls "$VMBACKUP_INSTANT_DIR")" ] || fail "records left: $(ls "$VMBACKUP_INSTANT_DIR")"
  [ -z "$(find "$SCRATCH" -maxdepth 1 -name 'vmbackup-test-*')" ] || fail "a sandbox overlay is left"
  ! pgrep -f "nbdkit -P $SCRATCH/instant/vmbackup-test-" >/dev/null || fail "a sandbox export is left"
}
no_sandbox_left

echo "== test-restore of a point whose file system was damaged before the backup"
# A copy of the guest's disk whose root file system lost /usr/share/doc's inode (its entry
# stays), defined as a domain of its own and backed up powered off.
DM=vmbt-damaged-$$
LIBVIRT_DOMAINS+=("$DM")
qemu-img convert -O raw "$(virsh domblklist "$D" | awk '$1 == "vda" { print $2 }')" dmg.raw
start=$(partx -g -o START -n 1 dmg.raw | tr -d ' ')
debugfs -w -R "clri /usr/share/doc" "dmg.raw?offset=$((start * 512))" >/dev/null 2>&1 \
  || fail "debugfs could not damage the copy"
virsh dumpxml --inactive "$D" | python3 -c '
import sys, xml.etree.ElementTree as ET
d = ET.fromstring(sys.stdin.read())
d.find("name").text = sys.argv[1]
d.remove(d.find("uuid"))
dev = d.find("devices")
for disk in dev.findall("disk"):
    if disk.find("target").get("dev") == "vda":
        disk.find("driver").set("type", "raw")
        disk.find("source").set("file", sys.argv[2])
    else:
        dev.remove(disk)
for s in dev.findall("serial"):
    for l in s.findall("log"):
        s.remove(l)
print(ET.tostring(d, encoding="unicode"))' "$DM" "$SCRATCH/dmg.raw" > dm.xml
virsh define dm.xml >/dev/null || fail "define the damaged domain"
"$VMBACKUP" backup --source qemu:///system --vm "$DM" --no-progress --json > dm.json 2> dm.err \
  || fail "backup of the damaged domain: $(cat dm.err)"
dm=$(json_field dm.json "j['id']")
# A test-restore killed while its sandbox boots leaves it behind; the next one removes it.
"$VMBACKUP" test-restore "$dm" --boot --disk-dir "$SCRATCH" > /dev/null 2>&1 &
killed=$!
sandbox_runs() { local doms; doms=$(virsh list --name); grep -q "^vmbackup-test-" <<< "$doms"; }
for _ in $(seq 120); do sandbox_runs && break; sleep 0.5; done
sandbox_runs || fail "the sandbox of the run to kill never started"
kill -9 $killed
wait $killed 2>/dev/null || true
set +e
"$VMBACKUP" --json test-restore "$dm" --boot --fsck --boot-timeout 300 --disk-dir "$SCRATCH" \
  > dmt.json 2> dmt.err
rc=$?
set -e
[ $rc -eq 1 ] || fail "the damaged point: exit $rc, not 1: $(cat dmt.err)"
grep -q "removed the sandbox of a killed test" dmt.err || fail "the killed run's sandbox: $(cat dmt.err)"
grep -q "failed: fsck disk 2000 /dev/sda1 (ext4): e2fsck found" dmt.err || fail "no reason: $(cat dmt.err)"
python3 - dmt.json <<'PY' || fail "damaged point: $(cat dmt.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is False, j
fsck = [c for c in j["checks"] if c["check"] == "fsck"]
assert len(fsck) == 1 and not fsck[0]["ok"] and "e2fsck found" in fsck[0]["detail"], fsck
assert [c["check"] for c in j["checks"]] == ["fsck", "boot"], j["checks"]  # the boot ran too
PY
"$VMBACKUP" list | grep -E "^$dm .*tested FAILED" >/dev/null || fail "list: $("$VMBACKUP" list)"
no_sandbox_left

echo "== no agent"
N=vmbt-noagent-$$
qemu-img create -q -f qcow2 n.qcow2 8M
define_domain "$N" n.qcow2
virsh start "$N" >/dev/null
expect_failure 1 "guest agent" -- "$VMBACKUP" backup --source qemu:///system --vm "$N" --quiesce --no-progress
"$VMBACKUP" backup --source qemu:///system --vm "$N" --quiesce --allow-crash-consistent \
  --no-progress --json > n.json || fail "crash-consistent fallback"
[ "$(json_field n.json "j['consistency']")" = crash ] || fail "consistency: $(cat n.json)"
grep -q "only crash-consistent" n.json || fail "no note: $(cat n.json)"
[ -z "$(virsh domjobinfo "$N" 2>/dev/null | grep -i backup)" ] || fail "a job is left"
echo "libvirt guest: all passed"
