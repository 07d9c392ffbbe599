#!/usr/bin/env bash
# `vmbackup copy` between a folder repository and an encrypted one on S3 (Ceph's radosgw, with
# the tests' fault proxy in between), and back into another folder:
# - every point arrives with its id and parent, restores byte-identical from each repository,
#   and the copies are read back and verified; the target's catalog lists them;
# - a second copy sends nothing; an incremental point copied later reads only what changed;
# - requests that fail at random on the way are retried, and nothing differs;
# - a copy killed with SIGKILL leaves a target whose points all verify, and the rerun finishes;
# - a prune of the copies killed with SIGKILL in the middle: check passes, the rerun finishes,
#   and gc then keeps what the last point needs;
# - the same repository on both sides, another chunk size, and a wrong key are refused.
source "$(dirname "$0")/functions.sh"
requires ceph-mon ceph-osd radosgw radosgw-admin python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
rgw_with_proxy
rules '[]'
S3="s3:http://127.0.0.1:$PROXY_PORT/vmb/copies?timeout=5"
A=$SCRATCH/site-a
B=$SCRATCH/site-b
echo "s3 passphrase" > s3.pw
field() {  # FILE PYTHON-EXPRESSION over j (the JSON document)
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

export VMHOST_DATASTORE=$SCRATCH/ds
SRC=vmhost://$SCRATCH/ds
"$H" init >/dev/null
"$H" vm create web --disk 48M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 12M /dev/urandom > rand12m
"$V" init --repo "$A" >/dev/null
"$V" init --repo "$S3" --encrypt --passphrase-file s3.pw >/dev/null || fail "init on S3"
"$V" init --repo "$B" >/dev/null

# point N: writes, a backup into A, and the disk as it was in disk-N.raw
point() {
  "$V" backup --repo "$A" --source "$SRC" --vm web --json > "b$1.json" 2> "b$1.err" ||
    fail "backup $1: $(cat "b$1.err")"
  "$H" disk read web 0 --offset 0 --length 48M > "disk-$1.raw"
  field "b$1.json" 'j["id"]'
}
same() {  # same REPO POINT N [KEY ARGS...]: the point restores to disk-N.raw
  local repo=$1 p=$2 n=$3
  shift 3
  "$V" restore --repo "$repo" "$@" "$p" --to-file "r.raw" --verify >/dev/null ||
    fail "restore $p from $repo"
  cmp -s r.raw "disk-$n.raw" || fail "point $p in $repo differs from the disk at its backup"
  rm -f r.raw
}
copy() {  # copy NAME ARGS...: the JSON report in NAME.json
  local name=$1
  shift
  "$V" copy --json "$@" > "$name.json" 2> "$name.err" || fail "copy $name: $(cat "$name.err")"
}

"$H" disk write web 0 --offset 1M --from rand12m >/dev/null
"$H" disk write web 0 --offset 30M --pattern 0x41 --length 2M >/dev/null
P1=$(point 1)
for i in 3 20 40; do "$H" disk write web 0 --offset ${i}M --pattern $((i + 1)) --length 64K >/dev/null; done
P2=$(point 2)

echo "== folder to encrypted S3, through failing requests"
rules '[{"method": "PUT", "path": "/packs/", "action": "503", "times": 1},
        {"action": "random", "rate": 0.1}]'
copy c1 --from "$A" --to "$S3" --to-passphrase-file s3.pw
rules '[]'
[ "$(field c1.json 'j["copied"]')" = 2 ] || fail "not both points copied: $(cat c1.json)"
[ "$(field c1.json 'j["target_transfer"]["retries"]')" -ge 1 ] || fail "no request was retried: $(cat c1.json)"
[ "$(field c1.json 'j["target_transfer"]["bytes_sent"]')" -ge $((12 << 20)) ] || fail "bytes sent: $(cat c1.json)"
[ "$(field c1.json 'j["verified_bytes"]')" -gt 0 ] || fail "the copies were not read back: $(cat c1.json)"
# The incremental point read only the chunks that differ from its parent.
[ "$(field c1.json 'j["points"][1]["parent_kept"]')" = True ] || fail "point 2 lost its parent: $(cat c1.json)"
[ "$(field c1.json 'j["points"][1]["chunks_read"]')" -le 3 ] || fail "point 2 read more than its changes: $(cat c1.json)"
same "$S3" "$P1" 1 --passphrase-file s3.pw
same "$S3" "$P2" 2 --passphrase-file s3.pw
"$V" list --repo "$S3" --passphrase-file s3.pw --json > l.json
[ "$(field l.json 'sorted(p["id"] for p in j)')" = "$(python3 -c "print(sorted(['$P1', '$P2']))")" ] ||
  fail "the target lists other points: $(cat l.json)"
"$V" show --repo "$S3" --passphrase-file s3.pw "$P2" > show.json
[ "$(field show.json 'j["parent"]')" = "$P1" ] || fail "the copy's parent: $(cat show.json)"

echo "== again: nothing to send"
copy c2 --from "$A" --to "$S3" --to-passphrase-file s3.pw
[ "$(field c2.json 'j["copied"]')" = 0 ] || fail "a second copy copied again: $(cat c2.json)"
[ "$(field c2.json 'j["target_transfer"]["objects_saved"]')" -le 2 ] || fail "a second copy stored objects: $(cat c2.json)"

echo "== a copy killed with SIGKILL, then run again"
"$H" disk write web 0 --offset 14M --from rand12m >/dev/null
P3=$(point 3)
"$V" copy --from "$A" --to "$S3" --to-passphrase-file s3.pw > killed.out 2>&1 &
k=$!
sleep 0.7
kill -9 $k 2>/dev/null || true
wait $k 2>/dev/null || true
"$V" verify --repo "$S3" --passphrase-file s3.pw > v.out 2>&1 || fail "the killed copy damaged the target: $(cat v.out)"
copy c3 --from "$A" --to "$S3" --to-passphrase-file s3.pw
same "$S3" "$P3" 3 --passphrase-file s3.pw
"$V" check --repo "$S3" --passphrase-file s3.pw > check.out 2>&1 || fail "check after the killed copy: $(cat check.out)"

echo "== S3 back to another folder, only the newest point"
copy c4 --from "$S3" --from-passphrase-file s3.pw --to "$B" "$P3"
[ "$(field c4.json 'j["copied"]')" = 1 ] || fail "not one point copied: $(cat c4.json)"
[ "$(field c4.json 'j["points"][0]["parent_kept"]')" = False ] || fail "a parent B lacks was kept"
[ "$(field c4.json 'j["source_transfer"]["bytes_received"]')" -gt 0 ] || fail "nothing came from S3: $(cat c4.json)"
same "$B" "$P3" 3
"$V" check --repo "$B" > checkb.out 2>&1 || fail "check of the folder copy: $(cat checkb.out)"

echo "== prune of the copies killed with SIGKILL in the middle, then run again"
# The first point record's DELETE stalls (its tombstone is written by then): the kill lands
# inside prune, deterministically.
rules '[{"method": "DELETE", "path": "/points/", "action": "stall", "seconds": 20, "times": 1}]'
"$V" prune --repo "$S3" --passphrase-file s3.pw --keep-last 1 > prune-killed.out 2>&1 &
k=$!
for _ in $(seq 300); do [ "$(hits stall)" -ge 1 ] && break; sleep 0.1; done
[ "$(hits stall)" -ge 1 ] || fail "prune never reached a point record: $(cat prune-killed.out)"
kill -9 $k
wait $k 2>/dev/null || true
rules '[]'
"$V" check --repo "$S3" --passphrase-file s3.pw > check2.out 2>&1 ||
  fail "check after the killed prune: $(cat check2.out)"
same "$S3" "$P3" 3 --passphrase-file s3.pw
"$V" prune --repo "$S3" --passphrase-file s3.pw --keep-last 1 > prune.out 2>&1 ||
  fail "prune after the killed one: $(cat prune.out)"
"$V" list --repo "$S3" --passphrase-file s3.pw --json > l2.json
[ "$(field l2.json '[p["id"] for p in j]')" = "['$P3']" ] || fail "after prune: $(cat l2.json)"
"$V" gc --repo "$S3" --passphrase-file s3.pw --grace 0 > gc.out 2>&1 || fail "gc: $(cat gc.out)"
"$V" verify --repo "$S3" --passphrase-file s3.pw > v2.out 2>&1 || fail "verify after gc: $(cat v2.out)"
same "$S3" "$P3" 3 --passphrase-file s3.pw

echo "== refusals"
expect_failure 2 "the same repository" -- "$V" copy --from "$A" --to "$A"
"$V" init --repo "$SCRATCH/big" --chunk-size 1M >/dev/null
expect_failure 1 "--chunk-size" -- "$V" copy --from "$A" --to "$SCRATCH/big" "$P1"
echo wrong > wrong.pw
expect_failure 11 "" -- "$V" copy --from "$S3" --from-passphrase-file wrong.pw --to "$B"
echo "s3 copy: ok"
