#!/usr/bin/env bash
# S3 Object Lock on Ceph's radosgw, with a 30 s lock so that locks end within the test: init
# makes a bucket with Object Lock; every object a point needs is locked (as boto3 sees it); a
# point that reuses older packs extends their locks first; nobody deletes a locked object, not
# forget, prune or gc with the same credentials, nor boto3 itself; check names a pack whose lock
# a privileged user shortened; once the locks end, forget and gc reclaim everything.
source "$(dirname "$0")/functions.sh"
requires ceph-mon ceph-osd radosgw radosgw-admin python3 /usr/bin/python3
/usr/bin/python3 -c 'import boto3' 2>/dev/null || {
  [ "${VMBACKUP_REQUIRE_ALL:-0}" = 1 ] && fail "python3-boto3 is not installed"
  echo "SKIP: python3-boto3 is not installed" >&2
  exit 77
}
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
OBJ="$E2E_DIR/../rgw/s3-object"
RGW=$SCRATCH/rgw
trap 'bash "$E2E_DIR/../rgw/rgw-up" --stop "$RGW"; rm -rf "$SCRATCH"' EXIT
eval "$(bash "$E2E_DIR/../rgw/rgw-up" "$RGW")" || fail "rgw-up"
export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO="s3:$S3_ENDPOINT/locked/site"
SRC=vmhost://$SCRATCH/ds
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
retention() { "$OBJ" retention locked "site/$1" | awk '{print $2}'; }
packs() { "$OBJ" keys locked site/packs/ | awk '{sub("^site/", "", $1); print $1}'; }
# Packs of more than 1 MiB: chunk data (a point's tree pages make packs of a few KiB).
data_packs() { "$OBJ" keys locked site/packs/ | awk '$2 > 1048576 {sub("^site/", "", $1); print $1}'; }

"$H" init >/dev/null
"$H" vm create web --disk 64M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 20M /dev/urandom > rand20m
"$H" disk write web 0 --offset 0 --from rand20m >/dev/null

# 1. init on a bucket with Object Lock, 30 s in governance mode.
"$V" init --object-lock 30s > init.out || fail "init --object-lock"
grep -q "Object Lock governance for 30 s" init.out || fail "init: $(cat init.out)"
[ "$("$OBJ" lock-enabled locked)" = Enabled ] || fail "the bucket was made without Object Lock"
expect_failure 2 "Object Lock needs an S3 repository" -- "$V" init --repo "$SCRATCH/folder" --object-lock 7
"$V" init --repo "s3:$S3_ENDPOINT/plain" >/dev/null || fail "init of a plain bucket"
expect_failure 1 "created without Object Lock" -- "$V" init --repo "s3:$S3_ENDPOINT/plain/x" --object-lock 7

# 2. The first point: every object it needs is locked for 30 s and a quarter more.
T0=$(date +%s)
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "backup 1"
P1=$(field b1.json 'j["id"]')
for key in config/config "points/$P1" $(packs); do
  read -r mode until < <("$OBJ" retention locked "site/$key")
  [ "$mode" = GOVERNANCE ] || fail "$key is not locked: $mode"
  [ "$until" -ge $((T0 + 30)) ] || fail "$key is locked only until $until (made at $T0)"
done
"$V" check >/dev/null || fail "check of a locked repository"
PACKS1=$(data_packs | sort)
[ -n "$PACKS1" ] || fail "no data packs"
for p in $PACKS1; do echo "$p $(retention "$p")"; done > locks1.txt
[ "$("$OBJ" delete-version locked "site/$(echo "$PACKS1" | head -1)")" = AccessDenied ] ||
  fail "boto3 deleted a locked pack"

# 3. Ten seconds on (past the quarter), a second point rewrites all but 1 MiB of the data; it
# still needs the first point's packs that hold that 1 MiB: their locks are extended before the
# point is saved.
sleep 9
"$H" disk write web 0 --offset 0 --length 19M --pattern 0x42 >/dev/null
T1=$(date +%s)
"$V" backup --source "$SRC" --vm web --json > b2.json || fail "backup 2"
P2=$(field b2.json 'j["id"]')
A=
while read -r p until; do
  now=$(retention "$p")
  [ "$now" -gt "$until" ] || continue
  [ "$now" -ge $((T1 + 30)) ] || fail "pack $p was extended only until $now"
  A=$p
done < locks1.txt
[ -n "$A" ] || fail "no lock of the first point's packs was extended for the second"
"$V" check >/dev/null || fail "check after the extension"

# 4. Nothing deletes a locked point or pack: forget and prune say until when, boto3 is refused.
expect_failure 1 "is locked until" -- "$V" forget "$P1"
"$V" prune --keep-last 1 > prune.out || fail "prune: $(cat prune.out)"
grep -q "kept (locked until .*): $P1" prune.out || fail "prune did not say it kept $P1: $(cat prune.out)"
[ "$("$V" list --json | field /dev/stdin 'len(j)')" = 2 ] || fail "a locked point went"
[ "$("$OBJ" delete-version locked "site/$A")" = AccessDenied ] || fail "boto3 deleted $A"

# 5. A privileged user (governance bypass) shortens the config's lock: check names it.
"$OBJ" shorten locked site/config/config $(($(date +%s) + 3))
expect_failure 1 "config/config is locked until" -- "$V" check

# 6. The first point's lock ends: it can be forgotten, but gc keeps its pack that the second
# point's lock still holds (now mostly garbage: a repack would be due).
while [ "$(date +%s)" -le $((T0 + 40)) ]; do sleep 1; done
"$V" forget "$P1" >/dev/null || fail "forget after the lock ended"
"$V" gc --grace 0 --json > gc1.json || fail "gc with locked packs"
[ "$(field gc1.json 'j["packs_locked"]')" -ge 1 ] || fail "gc did not keep a locked pack: $(cat gc1.json)"
"$OBJ" retention locked "site/$A" >/dev/null || fail "gc deleted the locked pack $A"
check_point() { "$V" restore "$1" --to-file r.raw --disk 2000 --verify >/dev/null || fail "restore $1"; }
check_point "$P2"

# 7. Every lock ends: forget and gc reclaim it all, versions included.
while [ "$(date +%s)" -le $((T1 + 40)) ]; do sleep 1; done
"$V" forget "$P2" >/dev/null || fail "forget of the second point"
"$V" gc --grace 0 --json > gc2.json || fail "gc after the locks ended"
[ "$("$OBJ" versions locked site/packs/)" = 0 ] || fail "pack versions are left: $(cat gc2.json)"
echo "object lock: all passed"
