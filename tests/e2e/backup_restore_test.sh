#!/usr/bin/env bash
# The backup and restore flows end to end on the embedded host: a full and incrementals
# (paged CBT answers, changed-but-trimmed areas), each point restored to files and compared with
# the disk as it was at its backup; restore to a new VM; in-place restore that writes only the
# changed areas; CBT invalidation and --no-full-fallback; a SIGKILL in the middle of a backup.
source "$(dirname "$0")/functions.sh"
requires python3 qemu-img
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
SRC=vmhost://$SCRATCH/ds

field() {  # FILE PYTHON-EXPRESSION over j (the JSON document)
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
snapshot_disks() {  # NAME: the VM's disks now, to NAME-0.raw and NAME-1.raw
  "$H" disk read web 0 --offset 0 --length 64M > "$1-0.raw"
  "$H" disk read web 1 --offset 0 --length 32M > "$1-1.raw"
}
snapshot_count() {  # VM: how many snapshots it has (vmhost fails loudly if it cannot tell)
  "$H" --json snapshot list "$1" > snaps.json || fail "vmhost snapshot list $1"
  field snaps.json 'len(j)'
}
check_point() {  # POINT NAME: the point's disks equal NAME-*.raw (and verify on the way)
  "$V" restore "$1" --to-file "r-$2-0.raw" --disk 2000 --verify >/dev/null || fail "restore $2 disk 0"
  "$V" restore "$1" --to-file "r-$2-1.raw" --disk 2001 --verify >/dev/null || fail "restore $2 disk 1"
  cmp -s "r-$2-0.raw" "$2-0.raw" || fail "point $2: disk 2000 differs from the disk at its backup"
  cmp -s "r-$2-1.raw" "$2-1.raw" || fail "point $2: disk 2001 differs from the disk at its backup"
  rm -f "r-$2-"*.raw
}

"$H" init >/dev/null
"$H" vm create web --disk 64M --disk 32M --cbt >/dev/null
"$H" vm power-on web >/dev/null
echo 'annotation = "the web server"' >> ds/web/web.vmx
head -c 3M /dev/urandom > rand3m
"$H" disk write web 0 --offset 1M --from rand3m >/dev/null
"$H" disk write web 0 --offset 20M --pattern 0x41 --length 2M >/dev/null
"$H" disk write web 1 --offset 0 --from rand3m >/dev/null
"$V" init >/dev/null

# 1. Full.
snapshot_disks p1
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "full backup"
P1=$(field b1.json 'j["id"]')
[ "$(field b1.json 'j["disks"][0]["mode"]')" = full ] || fail "the first backup is not a full"
[ "$(field b1.json 'j["disks"][0]["transport"]')" = san ] || fail "transport not recorded"
# san reads are CPU work beside the hashing: as many in flight as cores unless asked.
[ "$(field b1.json 'j["disks"][0]["reads_in_flight"]')" = "$(nproc)" ] || fail "reads in flight on san: $(cat b1.json)"
[ "$(field b1.json 'j["disks"][0]["bytes_read"]')" = $((5 * 1048576)) ] || fail "a full read more than the allocated data: $(cat b1.json)"
[ "$(snapshot_count web)" = 0 ] || fail "the backup left a snapshot"

# 2. Incremental with scattered writes; the host answers 2 areas per question.
echo 'vmhost.cbtMaxAreas = "2"' >> ds/web/web.vmx
for i in 3 9 17 33 50 61; do
  "$H" disk write web 0 --offset ${i}M --pattern $((i + 1)) --length 64K >/dev/null
done
snapshot_disks p2
"$V" backup --source "$SRC" --vm web --reads-in-flight 3 --json > b2.json || fail "incremental backup"
P2=$(field b2.json 'j["id"]')
[ "$(field b2.json 'j["disks"][0]["reads_in_flight"]')" = 3 ] || fail "--reads-in-flight 3: $(cat b2.json)"
[ "$(field b2.json 'j["disks"][0]["mode"]')" = incremental ] || fail "the second backup is not incremental"
[ "$(field b2.json 'j["disks"][0]["bytes_read"]')" = $((6 * 65536)) ] || fail "the incremental read more than what changed: $(cat b2.json)"
[ "$(field b2.json 'j["disks"][0]["cbt_queries"]')" -ge 4 ] || fail "CBT answers were not paged"
[ "$(field b2.json 'j["disks"][1]["bytes_read"]')" = 0 ] || fail "an unchanged disk was read"
[ "$(field b2.json 'j["parent"]')" = "$P1" ] || fail "the incremental's parent"

check_point "$P1" p1
check_point "$P2" p2
# diff names exactly the chunks that changed; stats sees the deduplication; prefixes and
# latest name points.
"$V" diff "$P1" "$P2" --json > diff.json || fail "diff"
python3 - diff.json <<'PY' || fail "diff: $(cat diff.json)"
import json, sys
d = {x["device_key"]: x for x in json.load(open(sys.argv[1]))["disks"]}
assert d[2000]["status"] == "changed" and d[2000]["changed_bytes"] == 6 * 65536, d[2000]
assert [a["offset"] for a in d[2000]["changed"]] == [m << 20 for m in (3, 9, 17, 33, 50, 61)]
assert d[2001]["status"] == "same", d[2001]
PY
"$V" stats --json > stats.json || fail "stats"
python3 - stats.json <<'PY' || fail "stats: $(cat stats.json)"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["points"] == 2 and s["vms"]["web"]["points"] == 2, s
assert s["logical_bytes"] > s["unique_bytes"] > 0 and s["dedup_ratio"] > 1.9, s
assert s["repository_bytes"] >= s["stored_bytes"] > 0, s
PY
[ "$("$V" show "${P2:0:22}" --json | field /dev/stdin 'j["id"]')" = "$P2" ] || fail "a unique prefix"
[ "$("$V" show latest --vm web --json | field /dev/stdin 'j["id"]')" = "$P2" ] || fail "latest --vm"
out=$("$V" show "${P1:0:4}" 2>&1) && fail "an ambiguous prefix was taken"
echo "$out" | grep -q "ambiguous" || fail "ambiguous: $out"
"$V" protect "$P1" >/dev/null && "$V" protect --remove "$P1" >/dev/null || fail "protect --remove"
[ "$("$V" show "$P1" --json | field /dev/stdin 'j["protected"]')" = False ] || fail "still protected"
# Other file formats: VMDK (our writer) and qcow2 (qemu-img), as qemu-img reads them.
for f in vmdk qcow2; do
  "$V" restore "$P2" --to-file "p2.$f" --disk 2000 --format $f >/dev/null || fail "restore to $f"
  qemu-img compare -q -f raw p2-0.raw "p2.$f" || fail "the $f restore differs"
done
"$V" restore "$P2" --to-file p2s.vmdk --format vmdk --vmdk-type stream >/dev/null || fail "restore to a stream vmdk"
qemu-img compare -q -f raw p2-0.raw p2s.vmdk || fail "the streamOptimized restore differs"
[ ! -e p2.vmdk.vmbackup-raw ] || fail "the temporary raw file was left behind"
"$V" verify >/dev/null || fail "verify"
"$V" check >/dev/null || fail "check"

# 3. Restore to a new VM.
"$V" restore "$P2" --to-vm --name web2 --source "$SRC" --verify --json > r.json || fail "restore to a new VM"
"$H" disk read web2 0 --offset 0 --length 64M | cmp -s - p2-0.raw || fail "the new VM's disk 0"
"$H" disk read web2 1 --offset 0 --length 32M | cmp -s - p2-1.raw || fail "the new VM's disk 1"
[ "$(snapshot_count web2)" = 0 ] || fail "restore left a snapshot on web2"
grep -q '^annotation = "the web server"' ds/web2/web2.vmx || fail "the new VM did not get the configuration"
grep -q '^displayName = "web2"' ds/web2/web2.vmx || fail "the new VM's name"
[ "$(grep '^uuid.bios' ds/web2/web2.vmx)" != "$(grep '^uuid.bios' ds/web/web.vmx)" ] || fail "the new VM has the old uuid"
grep -q 'web2.vmdk' ds/web2/web2.vmx || fail "the new VM's disks"

# 4. In place: the VM goes back to P1, writing only what changed since (6 areas of 64K).
"$H" disk write web 0 --offset 40M --pattern 0x77 --length 128K >/dev/null
expect_fail_inplace=$("$V" restore "$P1" --in-place --source "$SRC" 2>&1) && fail "in-place restore of a running VM"
echo "$expect_fail_inplace" | grep -q "powered on" || fail "in-place restore of a running VM: $expect_fail_inplace"
"$H" vm power-off web >/dev/null
"$V" restore "$P1" --in-place --source "$SRC" --verify --json > ip.json || fail "in-place restore"
[ "$(field ip.json 'j["disks"][0]["mode"]')" = "changed areas" ] || fail "in-place restore did not use CBT: $(cat ip.json)"
[ "$(field ip.json 'j["disks"][0]["bytes_written"] + j["disks"][0]["bytes_zeroed"]')" = $((8 * 65536)) ] || fail "in-place restore wrote more than the changed areas: $(cat ip.json)"
[ "$(field ip.json 'j["disks"][1]["bytes_written"]')" = 0 ] || fail "in-place restore wrote an unchanged disk"
"$H" disk read web 0 --offset 0 --length 64M | cmp -s - p1-0.raw || fail "in-place restore: disk 0 is not P1"
"$H" disk read web 1 --offset 0 --length 32M | cmp -s - p1-1.raw || fail "in-place restore: disk 1 is not P1"

# 5. The in-place restore reset change tracking and asked for fulls: the next backup is one
#    and says why;
#    --no-full-fallback refuses instead.
"$H" vm power-on web >/dev/null
out=$("$V" backup --source "$SRC" --vm web --no-full-fallback 2>&1) && fail "--no-full-fallback made a full"
echo "$out" | grep -q "needs a full backup" || fail "--no-full-fallback: $out"
[ "$(snapshot_count web)" = 0 ] || fail "a failed backup left its snapshot"
snapshot_disks p3
"$V" backup --source "$SRC" --vm web --json > b3.json || fail "backup after an in-place restore"
[ "$(field b3.json 'j["disks"][0]["mode"]')" = full ] || fail "the backup after a revert is not a full"
field b3.json 'j["disks"][0]["full_reason"]' | grep -q "in-place restore of point" || fail "no reason for the full: $(cat b3.json)"
check_point "$(field b3.json 'j["id"]')" p3

# 5b. A hard power-off invalidates change tracking: in-place restore then writes the whole
#     disk and says why; a resized disk makes the next backup a full that says so; quiesced
#     backups record the consistency achieved, and a failing freeze is an error unless
#     --allow-crash-consistent.
"$H" vm power-off web --hard >/dev/null
"$V" restore "$P1" --in-place --source "$SRC" --verify --json > ip2.json || fail "in-place restore without CBT"
[ "$(field ip2.json 'j["disks"][0]["mode"]')" = "whole disk" ] || fail "in-place restore without CBT: $(cat ip2.json)"
field ip2.json 'j["notes"][0]' | grep -q "written whole" || fail "no note for the whole-disk write: $(cat ip2.json)"
"$H" disk read web 0 --offset 0 --length 64M | cmp -s - p1-0.raw || fail "whole-disk in-place restore differs"
"$H" disk resize web 1 --size 48M >/dev/null || fail "resize"
"$H" vm power-on web >/dev/null
printf '#!/bin/sh
exit 0
' > ok-hook.sh
printf '#!/bin/sh
echo "cannot freeze" >&2
exit 3
' > bad-hook.sh
chmod +x ok-hook.sh bad-hook.sh
printf 'vmhost.freezeHook = "%s"
vmhost.thawHook = "%s"
' "$SCRATCH/ok-hook.sh" "$SCRATCH/ok-hook.sh" >> ds/web/web.vmx
"$V" backup --source "$SRC" --vm web --quiesce --json > q.json || fail "quiesced backup"
[ "$(field q.json 'j["consistency"]')" = filesystem ] || fail "consistency: $(cat q.json)"
field q.json '[d["full_reason"] for d in j["disks"] if d["device_key"] == 2001][0]' | grep -q "resized from 32.0 MiB to 48.0 MiB" \
  || fail "no resize reason: $(cat q.json)"
sed -i "s|ok-hook.sh\"$|ok-hook.sh\"|; s|vmhost.freezeHook = .*|vmhost.freezeHook = \"$SCRATCH/bad-hook.sh\"|" ds/web/web.vmx
out=$("$V" backup --source "$SRC" --vm web --quiesce 2>&1) && fail "a failing freeze was ignored"
echo "$out" | grep -q "cannot freeze" || fail "failing freeze: $out"
[ "$(snapshot_count web)" = 0 ] || fail "a failed quiesce left a snapshot"
"$V" backup --source "$SRC" --vm web --quiesce --allow-crash-consistent --json > q2.json || fail "--allow-crash-consistent"
[ "$(field q2.json 'j["consistency"]')" = crash ] || fail "consistency after a failed freeze: $(cat q2.json)"
field q2.json 'j["notes"]' | grep -q "only crash-consistent" || fail "no note on the failed quiesce: $(cat q2.json)"

# 6. SIGKILL in the middle of a backup (of a VM with 384 MiB of data, so the kill lands while
#    it reads): a stale snapshot stays, the next run removes it and succeeds.
"$H" vm create big --disk 512M --cbt >/dev/null
"$H" vm power-on big >/dev/null
head -c 384M /dev/urandom > rand384m
"$H" disk write big 0 --offset 64M --from rand384m >/dev/null
# Each signal is sent once the backup's snapshot exists; a backup that still finished first (a
# fast machine) is tried again, up to 3 times.
start_and_signal() {  # SIGNAL OUT: starts a backup of big, signals it mid-run; sets rc
  # Fresh data each time, so that every attempt has 384 MiB to store (not an instant no-op).
  head -c 384M /dev/urandom > rand384m
  "$H" disk write big 0 --offset 64M --from rand384m >/dev/null
  "$V" backup --source "$SRC" --vm big --no-progress >"$2" 2>&1 &
  pid=$!
  # The snapshot database names the backup's snapshot once it exists (read without the VM
  # lock or a python start: fast under load).
  for _ in $(seq 1 2000); do
    grep -s 'vmbackup-' ds/big/big.vmsd >/dev/null && break
    sleep 0.002
  done
  kill -"$1" $pid 2>/dev/null || true
  rc=0
  wait $pid 2>/dev/null || rc=$?
}
# SIGTERM first: the backup stops, removes its snapshot, and says so.
for _ in 1 2 3; do
  start_and_signal TERM term.out
  [ "$rc" = 0 ] || break
done
[ "$rc" = 130 ] || fail "a SIGTERMed backup exited $rc: $(cat term.out)"
grep -q "interrupted" term.out || fail "SIGTERM: $(cat term.out)"
[ "$(snapshot_count big)" = 0 ] || fail "a SIGTERMed backup left its snapshot"
for _ in 1 2 3; do
  start_and_signal KILL kill.out
  [ "$rc" = 0 ] || break
done
[ "$(snapshot_count big)" = 1 ] || fail "the killed backup left no snapshot (it ended before the kill)"
"$V" check >/dev/null || fail "check after a SIGKILL"
"$V" backup --source "$SRC" --vm big --json > b4.json || fail "the backup after a SIGKILL"
field b4.json 'j["notes"][0]' | grep -q "left by an interrupted backup" || fail "stale snapshot not removed: $(cat b4.json)"
[ "$(snapshot_count big)" = 0 ] || fail "snapshots left after the SIGKILL"
"$V" check >/dev/null || fail "check after the next backup"
"$V" restore "$(field b4.json 'j["id"]')" --to-file big.raw --disk 2000 >/dev/null || fail "restore big"
"$H" disk read big 0 --offset 0 --length 512M | cmp -s - big.raw || fail "the backup after a SIGKILL differs"
# 7. CBT audit: a change that bypassed change tracking (written straight into the flat file)
#    is caught; the job fails, leaves no snapshot, and the next backup is a full that says why.
"$H" vm create aud --disk 16M --cbt >/dev/null
"$H" vm power-on aud >/dev/null
"$H" disk write aud 0 --offset 0 --from rand3m >/dev/null
"$V" backup --source "$SRC" --vm aud --json > a1.json || fail "audit VM: full"
"$V" backup --source "$SRC" --vm aud --audit-cbt 100 --json > a2.json || fail "a clean audit failed"
[ "$(field a2.json 'j["disks"][0]["audited_chunks"]')" = 256 ] || fail "the audit did not read every unchanged chunk: $(cat a2.json)"
printf 'not seen by CBT' | dd of=ds/aud/aud-flat.vmdk bs=1 seek=$((5 * 1048576)) conv=notrunc status=none
out=$("$V" backup --source "$SRC" --vm aud --audit-cbt 100 2>&1) && fail "the audit missed a change CBT did not see"
echo "$out" | grep -q "CBT audit: disk 2000 bytes 5242880+65536 changed" || fail "audit message: $out"
[ "$(snapshot_count aud)" = 0 ] || fail "the failed audit left its snapshot"
"$V" backup --source "$SRC" --vm aud --json > a3.json || fail "the backup after a failed audit"
[ "$(field a3.json 'j["disks"][0]["mode"]')" = full ] || fail "no full after a failed audit"
field a3.json 'j["disks"][0]["full_reason"]' | grep -q "CBT audit failed" || fail "reason: $(cat a3.json)"
"$V" restore "$(field a3.json 'j["id"]')" --to-file aud.raw >/dev/null || fail "restore aud"
"$H" disk read aud 0 --offset 0 --length 16M | cmp -s - aud.raw || fail "the full after the audit differs"
"$V" backup --source "$SRC" --vm aud --json > a4.json || fail "the backup after the full"
[ "$(field a4.json 'j["disks"][0]["mode"]')" = incremental ] || fail "the full-needed mark was not cleared"
# 8. A damaged index: check says so, check --repair rebuilds it from the packs.
for f in repo/index/*; do truncate -s 20 "$f"; done
"$V" check >/dev/null 2>&1 && fail "check missed a damaged index"
"$V" check --repair >/dev/null 2>repair.txt || fail "check --repair: $(cat repair.txt)"
grep -q "removed [1-9][0-9]* damaged index files" repair.txt || fail "repair: $(cat repair.txt)"
"$V" verify >/dev/null || fail "verify after the repair"
"$V" jobs --json | field /dev/stdin '[x["kind"] for x in j]' | grep -q backup || fail "jobs not recorded"
echo "ok: backup and restore"
