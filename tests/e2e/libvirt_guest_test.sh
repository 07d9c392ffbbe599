#!/usr/bin/env bash
# Quiesce through qemu-guest-agent with a real guest: a Debian guest (built once and cached by
# ../shared/tools/guest/make-guest, booted under TCG by guest-up) writes a file that stays in
# its page cache; a quiesced backup freezes the guest's file systems (which flushes them), so
# the restored disk holds the file, and the point says "filesystem". The agent's own
# guest-fsfreeze-status is "thawed" afterwards: the freeze ended. A domain without an agent
# cannot be quiesced: the backup fails naming the agent, or with --allow-crash-consistent is
# crash-consistent and says so. (Control, run by hand on 2026-11-30: the same write followed at
# once by a backup without --quiesce is not in the point.)
source "$(dirname "$0")/functions.sh"
libvirt_setup
requires debootstrap python3
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
