#!/usr/bin/env bash
# Repositories on S3 end to end, on Ceph's radosgw (tests/rgw/rgw-up) with the tests' own fault
# proxy in between (tests/rgw/s3-fault-proxy): init makes the bucket; full and incremental
# backups and restores byte-identical while requests fail (500, 503, resets, a stall past the
# timeout); an export served from the bucket; the catalog rebuilt from the bucket; a backup and
# a gc killed with SIGKILL leave every earlier point intact and the next run recovers; a quota
# that runs out fails the backup cleanly; two writers with their own cache folders back up at
# once into one bucket.
source "$(dirname "$0")/functions.sh"
requires ceph-mon ceph-osd radosgw radosgw-admin python3 nbdkit nbdcopy qemu-img
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
rgw_with_proxy
cleanup() {
  pkill -f "nbdkit.*$SCRATCH" 2>/dev/null || true
  rgw_cleanup
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
DIRECT="s3:$S3_ENDPOINT/vmb/site-a"
PROXIED="s3:http://127.0.0.1:$PROXY_PORT/vmb/site-a?timeout=3"

export VMHOST_DATASTORE=$SCRATCH/ds
SRC=vmhost://$SCRATCH/ds
field() {  # FILE PYTHON-EXPRESSION over j (the JSON document)
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
snapshot_disks() {  # VM NAME: the VM's disks now, to NAME-0.raw and NAME-1.raw
  "$H" disk read "$1" 0 --offset 0 --length 64M > "$2-0.raw"
  "$H" disk read "$1" 1 --offset 0 --length 32M > "$2-1.raw"
}
check_point() {  # REPO POINT NAME: the point's disks equal NAME-*.raw (verified on the way)
  "$V" restore --repo "$1" "$2" --to-file "r-$3-0.raw" --disk 2000 --verify >/dev/null ||
    fail "restore $3 disk 0"
  "$V" restore --repo "$1" "$2" --to-file "r-$3-1.raw" --disk 2001 --verify >/dev/null ||
    fail "restore $3 disk 1"
  cmp -s "r-$3-0.raw" "$3-0.raw" || fail "point $3: disk 2000 differs from the disk at its backup"
  cmp -s "r-$3-1.raw" "$3-1.raw" || fail "point $3: disk 2001 differs from the disk at its backup"
  rm -f "r-$3-"*.raw
}
points() { "$V" list --repo "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

"$H" init >/dev/null
for vm in web db; do
  "$H" vm create $vm --disk 64M --disk 32M --cbt >/dev/null
  "$H" vm power-on $vm >/dev/null
done
head -c 20M /dev/urandom > rand20m

echo "step 1 at ${SECONDS}s" >&2
# 1. init makes the bucket; a second init and a wrong secret are refused, naming the problem.
"$V" init --repo "$DIRECT" >/dev/null || fail "init on S3"
expect_failure 1 "already holds a repository" -- "$V" init --repo "$DIRECT"
expect_failure 1 "SignatureDoesNotMatch" -- env AWS_SECRET_ACCESS_KEY=wrong "$V" list --repo "$DIRECT"
expect_failure 10 "no repository at" -- "$V" list --repo "s3:$S3_ENDPOINT/vmb/elsewhere"

echo "step 2 at ${SECONDS}s" >&2
# 2. A full through the proxy while requests fail: a pack's PUT answered 503, an index GET
# reset, and 10% of everything else broken at random.
"$H" disk write web 0 --offset 1M --from rand20m >/dev/null
"$H" disk write web 0 --offset 40M --pattern 0x41 --length 2M >/dev/null
"$H" disk write web 1 --offset 0 --length 3M --pattern 0x17 >/dev/null
snapshot_disks web p1
rules '[{"method": "PUT", "path": "/packs/", "action": "503", "times": 1},
        {"method": "PUT", "path": "/points/", "action": "reset", "times": 1},
        {"action": "random", "rate": 0.1}]'
"$V" backup --repo "$PROXIED" --source "$SRC" --vm web --json > b1.json 2>b1.err ||
  fail "full backup through failing requests: $(cat b1.err)"
P1=$(field b1.json 'j["id"]')
[ "$(hits '503')" -ge 1 ] && [ "$(hits 'reset')" -ge 1 ] || fail "no faults were injected: $(cat "$PX/log")"
# The report counts the traffic: the retries, and at least the packs and the point sent.
[ "$(field b1.json 'j["transfer"]["retries"]')" -ge 1 ] || fail "retries not reported: $(cat b1.json)"
[ "$(field b1.json 'j["transfer"]["objects_saved"]')" -ge 3 ] || fail "uploads not reported: $(cat b1.json)"
[ "$(field b1.json 'j["transfer"]["bytes_sent"]')" -ge $((20 << 20)) ] || fail "bytes sent: $(cat b1.json)"

echo "step 3 at ${SECONDS}s" >&2
# 3. An incremental while one PUT stalls past the 3 s timeout.
for i in 3 9 50; do "$H" disk write web 0 --offset ${i}M --pattern $((i + 1)) --length 64K >/dev/null; done
snapshot_disks web p2
rules '[{"method": "PUT", "path": "/packs/", "action": "stall", "seconds": 5, "times": 1}]'
"$V" backup --repo "$PROXIED" --source "$SRC" --vm web --json > b2.json 2>b2.err ||
  fail "incremental with a stalled PUT: $(cat b2.err)"
P2=$(field b2.json 'j["id"]')
[ "$(field b2.json 'j["disks"][0]["mode"]')" = incremental ] || fail "the second backup is not incremental"
[ "$(hits stall)" = 1 ] || fail "the stall did not happen: $(grep PUT "$PX/log")"

echo "step 4 at ${SECONDS}s" >&2
# 4. Restores through failing requests are byte-identical and verified.
rules '[{"action": "random", "rate": 0.05}]'
check_point "$PROXIED" "$P1" p1
check_point "$DIRECT" "$P2" p2
rules '[]'
"$V" check --repo "$DIRECT" >/dev/null || fail "check"
"$V" verify --repo "$DIRECT" >/dev/null || fail "verify"

echo "step 5 at ${SECONDS}s" >&2
# 5. An export served straight from the bucket.
"$V" serve --repo "$DIRECT" "$P2" --disk 2000 --socket "$SCRATCH/s.sock" > serve.out 2>&1 &
SERVE=$!
for _ in $(seq 100); do [ -S "$SCRATCH/s.sock" ] && break; sleep 0.1; done
nbdcopy "nbd+unix:///?socket=$SCRATCH/s.sock" served.raw || fail "nbdcopy from the export: $(cat serve.out)"
kill $SERVE; wait $SERVE 2>/dev/null || true
cmp -s served.raw p2-0.raw || fail "the served disk differs from the point"

echo "step 6 at ${SECONDS}s" >&2
# 6. The catalog lives in the cache folder; without it, it is rebuilt from the bucket.
[ -n "$(find "$VMBACKUP_CACHE_DIR" -name catalog.db)" ] || fail "no catalog in the cache folder"
rm -rf "$VMBACKUP_CACHE_DIR"
[ "$(points "$DIRECT")" = 2 ] || fail "the rebuilt catalog lost points"

echo "step 7 at ${SECONDS}s" >&2
# 7. SIGKILL while a pack upload hangs: the earlier points stay whole, the next run recovers
# (the dead run's lock and snapshot go, its pack without an index is gc's).
"$H" disk write web 0 --offset 20M --from rand20m >/dev/null
rules '[{"method": "PUT", "path": "/packs/", "action": "delay", "seconds": 60}]'
"$V" backup --repo "$PROXIED" --source "$SRC" --vm web -q > /dev/null 2>&1 &
KILLED=$!
for _ in $(seq 300); do grep -q "PUT .*/packs/.* delay" "$PX/log" && break; sleep 0.1; done
grep -q "PUT .*/packs/.* delay" "$PX/log" || fail "the backup never uploaded a pack"
kill -9 $KILLED; wait $KILLED 2>/dev/null || true
rules '[]'
[ "$(points "$DIRECT")" = 2 ] || fail "a killed backup changed the points"
snapshot_disks web p3
"$V" backup --repo "$DIRECT" --source "$SRC" --vm web --json > b3.json 2>b3.err ||
  fail "the backup after a killed one: $(cat b3.err)"
grep -q "removed a stale shared lock" b3.err || fail "the dead run's lock was not removed: $(cat b3.err)"
P3=$(field b3.json 'j["id"]')
check_point "$DIRECT" "$P1" p1
check_point "$DIRECT" "$P2" p2
check_point "$DIRECT" "$P3" p3

echo "step 8 at ${SECONDS}s" >&2
# 8. SIGKILL while gc deletes: every point still restores and the next gc finishes the job.
"$H" disk write db 0 --offset 0 --length 6M --pattern 0x66 >/dev/null
head -c 6M /dev/urandom > rand6m
"$H" disk write db 0 --offset 8M --from rand6m >/dev/null
"$V" backup --repo "$DIRECT" --source "$SRC" --vm db -q >/dev/null || fail "backup of db"
"$V" forget --repo "$DIRECT" latest --vm db >/dev/null || fail "forget"
rules '[{"method": "DELETE", "action": "delay", "seconds": 60}]'
"$V" gc --repo "$PROXIED" --grace 0 > gc1.out 2>&1 &
KILLED=$!
for _ in $(seq 300); do grep -q "DELETE .* delay" "$PX/log" && break; sleep 0.1; done
grep -q "DELETE .* delay" "$PX/log" || fail "gc never deleted: $(cat gc1.out)"
kill -9 $KILLED; wait $KILLED 2>/dev/null || true
rules '[]'
"$V" check --repo "$DIRECT" >/dev/null 2>&1 || true  # may report what the killed gc left
"$V" gc --repo "$DIRECT" --grace 0 > gc2.out 2>&1 || fail "gc after a killed gc: $(cat gc2.out)"
"$V" check --repo "$DIRECT" > check.out 2>&1 || fail "check after gc: $(cat check.out)"
check_point "$DIRECT" "$P1" p1
check_point "$DIRECT" "$P3" p3

echo "step 9 at ${SECONDS}s" >&2
# 9. A quota that runs out fails the backup cleanly; the earlier point stays whole.
QUOTA="s3:$S3_ENDPOINT/vmq"
"$V" init --repo "$QUOTA" >/dev/null || fail "init of the quota bucket"
"$V" backup --repo "$QUOTA" --source "$SRC" --vm db -q >/dev/null || fail "backup before the quota"
snapshot_disks db q1
Q1=$("$V" list --repo "$QUOTA" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
radosgw-admin -c "$RGW/ceph.conf" quota set --quota-scope=bucket --bucket=vmq --max-size=$((16 << 20)) >/dev/null
radosgw-admin -c "$RGW/ceph.conf" quota enable --quota-scope=bucket --bucket=vmq >/dev/null
"$H" disk write db 1 --offset 0 --from rand20m >/dev/null
expect_failure 1 "QuotaExceeded" -- "$V" backup --repo "$QUOTA" --source "$SRC" --vm db
[ "$("$H" --json snapshot list db | field /dev/stdin 'len(j)')" = 0 ] || fail "the failed backup left a snapshot"
[ "$(points "$QUOTA")" = 1 ] || fail "a failed backup added a point"
check_point "$QUOTA" "$Q1" q1

echo "step 10 at ${SECONDS}s" >&2
# 10. Two writers at once, each with its own cache folder, into one bucket: both points are
# whole, and gc leaves one copy of what they share.
TWO="s3:$S3_ENDPOINT/vmb/two"
"$V" init --repo "$TWO" >/dev/null || fail "init of the shared repository"
for vm in a b; do
  "$H" vm create $vm --disk 64M --disk 32M --cbt >/dev/null
  "$H" vm power-on $vm >/dev/null
  "$H" disk write $vm 0 --offset 0 --from rand20m >/dev/null
  "$H" disk write $vm 1 --offset 0 --length 2M --pattern "0x$([ $vm = a ] && echo 0a || echo 0b)" >/dev/null
  snapshot_disks $vm two-$vm
done
VMBACKUP_CACHE_DIR=$SCRATCH/cache-a "$V" backup --repo "$TWO" --source "$SRC" --vm a --json > ba.json 2>ba.err &
A=$!
VMBACKUP_CACHE_DIR=$SCRATCH/cache-b "$V" backup --repo "$TWO" --source "$SRC" --vm b --json > bb.json 2>bb.err &
B=$!
wait $A || fail "writer a: $(cat ba.err)"
wait $B || fail "writer b: $(cat bb.err)"
check_point "$TWO" "$(field ba.json 'j["id"]')" two-a
check_point "$TWO" "$(field bb.json 'j["id"]')" two-b
"$V" gc --repo "$TWO" --grace 0 >/dev/null || fail "gc of the shared repository"
"$V" stats --repo "$TWO" --json > two.json || fail "stats"
# 20 MiB shared (random: stored as is) and 2 MiB of a pattern each (compressed to little).
size=$(field two.json 'j["repository_bytes"]')
[ "$size" -lt $((23 << 20)) ] || fail "the shared data is stored twice after gc: $size bytes"
check_point "$TWO" "$(field ba.json 'j["id"]')" two-a
check_point "$TWO" "$(field bb.json 'j["id"]')" two-b
echo "s3 repository: all passed"
