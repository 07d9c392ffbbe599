#!/usr/bin/env bash
# Change ids belong to one disk: a disk replaced under the same device key (another ddb.uuid in
# its base descriptor, as a new disk would have) gets a full backup that says why, and the
# point records the new identity.
source "$(dirname "$0")/functions.sh"
V=$VMBACKUP
H=("$(dirname "$V")/vmhost" --datastore ds)
SRC="vmhost://$SCRATCH/ds"
export VMBACKUP_REPO=$SCRATCH/repo VMBACKUP_LOCK_DIR=$SCRATCH/locks
"${H[@]}" init >/dev/null
"${H[@]}" vm create web --disk 16M --cbt >/dev/null
"${H[@]}" vm power-on web >/dev/null
"${H[@]}" disk write web 0 --offset 1M --pattern 0x61 --length 1M >/dev/null
"${H[@]}" vm power-off web >/dev/null
"$V" init >/dev/null
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "first backup"
"$V" backup --source "$SRC" --vm web --json > b2.json || fail "second backup"
mode() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['disks'][0]; print(d['mode'], '|', d['full_reason'])" "$1"; }
[ "$(mode b2.json | cut -d' ' -f1)" = incremental ] || fail "the second backup is not incremental: $(mode b2.json)"
uuid_of() { "$V" show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][0].get('uuid', ''))"; }
P2=$(python3 -c "import json; print(json.load(open('b2.json'))['id'])")
OLD=$(uuid_of "$P2")
[ -n "$OLD" ] || fail "the point does not record the disk's uuid"
# The disk is replaced: same key, same size, another identity.
sed -i 's/^ddb.uuid = .*/ddb.uuid = "01 02 03 04 05 06 07 08-09 0a 0b 0c 0d 0e 0f 10"/' ds/web/web.vmdk
"$V" backup --source "$SRC" --vm web --json > b3.json || fail "backup after the replacement"
mode b3.json | grep -q "^full | the disk was replaced" || fail "no full for a replaced disk: $(mode b3.json)"
P3=$(python3 -c "import json; print(json.load(open('b3.json'))['id'])")
[ "$(uuid_of "$P3")" = "01 02 03 04 05 06 07 08-09 0a 0b 0c 0d 0e 0f 10" ] || fail "the new identity is not recorded"
"$V" backup --source "$SRC" --vm web --json > b4.json || fail "backup after that"
[ "$(mode b4.json | cut -d' ' -f1)" = incremental ] || fail "the next backup is not incremental again: $(mode b4.json)"
echo "ok: a replaced disk gets a full"
