#!/usr/bin/env bash
# Paths to lost or exposed data, each closed: private file modes, restores that never leave a
# partial file under the final name, negative keep counts, empty or doubled keys, and an
# encrypted repository whose config was edited to say "unencrypted".
source "$(dirname "$0")/functions.sh"
requires python3 qemu-img
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
SRC=vmhost://$SCRATCH/ds
umask 022

field() {  # FILE PYTHON-EXPRESSION over j (the JSON document)
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
expect_error() {  # WANT_EXIT FRAGMENT -- COMMAND...
  local want=$1 fragment=$2 rc=0
  shift 3
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$fragment" out.txt err.txt || fail "'$*': output lacks '$fragment': $(cat out.txt err.txt)"
}

"$H" init >/dev/null
"$H" vm create web --disk 256M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 200M /dev/urandom > rand
"$H" disk write web 0 --offset 0 --from rand >/dev/null
"$V" init >/dev/null
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "backup"
P1=$(field b1.json 'j["id"]')

# 1. File modes: the repository and every restored image are private (umask 022 here).
bad=$(find repo -type f ! -perm 600 -o -type d ! -perm 700 | grep -v '^repo$' || true)
[ -z "$bad" ] || fail "repository entries readable by others: $bad"
[ "$(stat -c %a repo)" = 700 ] || fail "the repository folder is $(stat -c %a repo)"
for f in raw vmdk qcow2; do
  "$V" restore "$P1" --to-file "r.$f" --format $f >/dev/null || fail "restore to $f"
  [ "$(stat -c %a "r.$f")" = 600 ] || fail "a restored $f image is mode $(stat -c %a "r.$f")"
done
[ -z "$(ls -A | grep vmbackup-partial || true)" ] || fail "temporaries left: $(ls -A)"
rm -f r.*

# 2. Interrupted and failed restores leave nothing under the final name; a killed one's
#    temporary folder is removed by the next restore into the same folder.
"$V" restore "$P1" --to-file int.raw >/dev/null 2>err.txt &
pid=$!
for _ in $(seq 1 400); do
  ls -A | grep vmbackup-partial >/dev/null && break
  sleep 0.005
done
kill -INT $pid
rc=0
wait $pid || rc=$?
if [ "$rc" = 0 ]; then
  echo "note: the restore finished before SIGINT landed" >&2
  rm -f int.raw
else
  [ "$rc" = 130 ] || fail "an interrupted restore exited $rc: $(cat err.txt)"
  [ ! -e int.raw ] || fail "an interrupted restore left int.raw"
fi
[ -z "$(ls -A | grep vmbackup-partial || true)" ] || fail "an interrupted restore left $(ls -A)"
"$V" restore "$P1" --to-file killed.raw >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 400); do
  ls -A | grep vmbackup-partial >/dev/null && break
  sleep 0.005
done
kill -KILL $pid
wait $pid 2>/dev/null || true
"$V" restore "$P1" --to-file other.raw >/dev/null || fail "restore after a killed one"
[ -z "$(ls -A | grep vmbackup-partial || true)" ] || fail "the killed restore's temporary stayed: $(ls -A)"
cmp -s other.raw <("$H" disk read web 0 --offset 0 --length 256M) || fail "restore differs"
rm -f killed.raw other.raw
cp -a repo repo.good
for p in $(find repo/packs -type f | head -3); do
  printf 'XXXXXXXX' | dd of="$p" bs=1 seek=4096 conv=notrunc status=none
done
expect_error 1 "" -- "$V" restore "$P1" --to-file damaged.raw
[ ! -e damaged.raw ] || fail "a failed restore left damaged.raw"
expect_error 1 "" -- "$V" restore "$P1" --to-file damaged.qcow2 --format qcow2
[ -z "$(ls -A | grep -E 'damaged|vmbackup' || true)" ] || fail "a failed restore left $(ls -A)"
rm -rf repo && mv repo.good repo
# Standard output.
"$V" restore "$P1" --to-file - > stdout.raw || fail "restore to standard output"
cmp -s stdout.raw <("$H" disk read web 0 --offset 0 --length 256M) || fail "the stream differs"
"$V" restore "$P1" --to-file - | cmp -s - stdout.raw || fail "the piped stream differs"
rm -f stdout.raw

# 3. Negative keep counts are refused, and remove nothing.
expect_error 2 "must not be negative" -- "$V" prune --keep-last -1
[ "$("$V" list --json | field /dev/stdin 'len(j)')" = 1 ] || fail "prune with -1 removed points"

# 4. Keys: an empty passphrase and two key sources at once are refused.
: > empty
expect_error 2 "is empty" -- "$V" init --repo e1 --encrypt --passphrase-file empty
[ ! -e e1 ] || fail "a failed init left e1 behind"
expect_error 2 "VMBACKUP_PASSPHRASE is empty" -- env VMBACKUP_PASSPHRASE= "$V" init --repo e2 --encrypt
[ ! -e e2 ] || fail "a failed init left e2 behind"
echo secret > pass
"$V" init --repo enc --encrypt --passphrase-file pass >/dev/null
expect_error 2 "only one of" -- "$V" list --repo enc --passphrase-file pass --key-file pass
"$V" list --repo enc --password-command 'cat pass' >/dev/null || fail "--password-command"

# 5. An encrypted repository whose config is edited to "unencrypted" stores no plaintext.
"$V" backup --repo enc --passphrase-file pass --source "$SRC" --vm web >/dev/null || fail "encrypted backup"
python3 - enc/config/config <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["encryption"] = "none"
for k in ("config_mac", "kdf", "key_check"):
    c.pop(k, None)
open(sys.argv[1], "w").write(json.dumps(c))
PY
expect_error 11 "refusing" -- "$V" backup --repo enc --passphrase-file pass --source "$SRC" --vm web
expect_error 1 "refusing to store plaintext" -- "$V" backup --repo enc --source "$SRC" --vm web

# 6. A point record that disappears is not silently dropped: list notices, check reports it,
#    gc refuses until `forget` acknowledges it. A damaged record is removed with forget --damaged.
"$H" disk write web 0 --offset 1M --pattern 0x33 --length 64K >/dev/null
"$V" backup --source "$SRC" --vm web --json > b2.json || fail "second backup"
P2=$(field b2.json 'j["id"]')
"$H" disk write web 0 --offset 2M --pattern 0x34 --length 64K >/dev/null
"$V" backup --source "$SRC" --vm web --json > b3.json || fail "third backup"
P3=$(field b3.json 'j["id"]')
"$V" list >/dev/null
rm "repo/points/$P2"
"$V" list --json > l.json 2>err.txt
grep -q "gone from the repository" err.txt || fail "list did not notice the lost point: $(cat err.txt)"
expect_error 1 "restore point $P2 is gone" -- "$V" check
expect_error 1 "vmbackup forget $P2" -- "$V" gc
rm -rf "$VMBACKUP_CACHE_DIR"  # without the catalog, P3's parent link still tells
expect_error 1 "restore point $P2 is gone" -- "$V" check
"$V" forget "$P2" | grep -q "acknowledged" || fail "forget of a lost point"
"$V" check >/dev/null || fail "check after acknowledging the loss"
"$V" gc --json >/dev/null || fail "gc after acknowledging the loss"
echo garbage > "repo/points/$P3"
expect_error 1 "vmbackup forget $P3" -- "$V" gc
"$V" forget --damaged | grep -q "forgot $P3 (damaged)" || fail "forget --damaged"
"$V" gc >/dev/null || fail "gc after forget --damaged"
[ "$("$V" list --json | field /dev/stdin '[p["id"] for p in j]')" = "['$P1']" ] || fail "list after forget"

# 7. The catalog is a cache outside the repository: a damaged one is rebuilt, and the mark
#    "the next backup must be a full" (a failed CBT audit) lives in the repository.
cat_db=$(ls "$VMBACKUP_CACHE_DIR"/*/catalog.db)
[ ! -e repo/catalog.db ] || fail "a catalog inside the repository"
echo "not a database" > "$cat_db"
"$V" list >/dev/null 2>err.txt || fail "a damaged catalog blocks list: $(cat err.txt)"
grep -q "rebuilt it from the repository" err.txt || fail "the rebuild was not told: $(cat err.txt)"
printf 'not seen by CBT' | dd of=ds/web/web-flat.vmdk bs=1 seek=$((100 * 1048576)) conv=notrunc status=none
"$V" backup --source "$SRC" --vm web --audit-cbt 100 >/dev/null 2>&1 && fail "the audit missed a change"
rm -rf "$VMBACKUP_CACHE_DIR"
"$V" backup --source "$SRC" --vm web --json > b4.json || fail "backup after the failed audit"
[ "$(field b4.json 'j["disks"][0]["mode"]')" = full ] || fail "the full-needed mark was lost with the catalog"
field b4.json 'j["disks"][0]["full_reason"]' | grep -q "CBT audit failed" || fail "reason: $(cat b4.json)"

# 8. An encrypted repository shows no VM name, label or change id anywhere in its folder
#    (needles long enough that random ciphertext cannot hold them by chance).
for needle in '"name":"web"' 'Hard disk 1' 'change_id' 'backup web'; do
  grep -rqaF "$needle" enc && fail "the encrypted repository shows '$needle' in the clear"
done

# 9. A read-only repository (a read-only mount) is listed, shown, verified, checked and
#    restored from with --no-lock.
mkdir ro
unshare -m bash -euc '
  mount --bind repo ro && mount -o remount,ro,bind ro
  V=$1
  "$V" list --repo ro --no-lock >/dev/null
  "$V" show --repo ro --no-lock latest >/dev/null
  "$V" verify --repo ro --no-lock >/dev/null
  "$V" check --repo ro --no-lock >/dev/null
  "$V" restore --repo ro --no-lock latest --to-file ro.raw >/dev/null
' _ "$V" 2>err.txt || fail "a read-only repository: $(cat err.txt)"
[ -s ro.raw ] || fail "no restore from the read-only repository"

# 10. Damage: verify records it; restore --ignore-damage writes everything else and lists the
#     damaged range; the next incremental backup reads the damaged chunk again, which heals the
#     repository for every point that uses it.
"$V" backup --source "$SRC" --vm web --json > b5.json || fail "backup before the damage"
P5=$(field b5.json 'j["id"]')
pack=$(find repo/packs -type f -size +1M | head -1)
printf 'XXXX' | dd of="$pack" bs=1 seek=100000 conv=notrunc status=none
expect_error 1 "DAMAGED" -- "$V" verify
grep -q "recorded in the repository" out.txt || fail "verify did not say the damage is recorded"
expect_error 1 "damaged" -- "$V" restore "$P5" --to-file no.raw
"$V" restore "$P5" --to-file ign.raw --ignore-damage --json > ign.json 2>ign.err \
  || fail "restore --ignore-damage: $(cat ign.err)"
grep -q "WARNING" ign.err || fail "restore --ignore-damage gave no warning"
"$H" disk read web 0 --offset 0 --length 256M > web.raw
python3 - ign.json ign.raw web.raw <<'PY' || fail "restore --ignore-damage: $(cat ign.json)"
import json, sys
ranges = json.load(open(sys.argv[1]))["disks"][0]["damaged"]
assert len(ranges) >= 1 and all(r["length"] == 65536 for r in ranges), ranges
got, want = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
assert len(got) == len(want)
pos = 0
for r in ranges:  # everything but the damaged ranges is the disk's content
    assert got[pos:r["offset"]] == want[pos:r["offset"]]
    pos = r["offset"] + r["length"]
assert got[pos:] == want[pos:]
PY
"$V" backup --source "$SRC" --vm web --json > b6.json || fail "the backup after the damage"
[ "$(field b6.json 'j["disks"][0]["mode"]')" = incremental ] || fail "not an incremental: $(cat b6.json)"
[ "$(field b6.json 'j["disks"][0]["damaged_reread"]')" -gt 0 ] || fail "the damaged chunk was not read again"
"$V" verify >/dev/null || fail "the repository did not heal"
"$V" restore "$P5" --to-file healed.raw >/dev/null || fail "the damaged point after healing"
cmp -s healed.raw web.raw || fail "the healed point differs"
rm -f ign.raw healed.raw web.raw

# 11. A full disk: the backup fails saying so (not "short write"), exit 1, and the earlier
#     point still restores; once there is room the next backup succeeds.
truncate -s 96M small.img
mkfs.ext4 -q -F small.img
mkdir small
unshare -m bash -euc '
  V=$1 SRC=$2 H=$3
  mount -o loop small.img small
  "$V" init --repo small/repo >/dev/null
  "$H" vm create full --disk 128M --cbt >/dev/null
  "$H" vm power-on full >/dev/null
  head -c 16M /dev/urandom > f16
  "$H" disk write full 0 --offset 0 --from f16 >/dev/null
  "$V" backup --repo small/repo --source "$SRC" --vm full >/dev/null
  head -c 120M /dev/urandom > f120
  "$H" disk write full 0 --offset 0 --from f120 >/dev/null
  rc=0
  "$V" backup --repo small/repo --source "$SRC" --vm full >out.txt 2>err.txt || rc=$?
  [ "$rc" = 1 ] || { echo "a backup onto a full disk exited $rc: $(cat err.txt)"; exit 1; }
  grep -q "No space left on device" err.txt || { echo "full disk: $(cat err.txt)"; exit 1; }
  "$V" check --repo small/repo >/dev/null || { echo "check after a full disk"; exit 1; }
  "$V" restore --repo small/repo latest --to-file f.raw >/dev/null
  cmp -s <(head -c 16M f.raw) f16 || { echo "the earlier point after a full disk"; exit 1; }
  rm -f f.raw
  "$H" disk write full 0 --offset 0 --pattern 0 --length 120M >/dev/null
  "$H" disk write full 0 --offset 0 --from f16 >/dev/null
  "$V" gc --repo small/repo --grace 0 >/dev/null
  "$V" backup --repo small/repo --source "$SRC" --vm full >/dev/null \
    || { echo "no backup once there is room"; exit 1; }
  umount small
' _ "$V" "$SRC" "$H" 2>&1 | tail -5 > small.txt || true
grep -q . small.txt && fail "full disk: $(cat small.txt)"

# 15. A point that cannot be saved (its folder made immutable): the backup fails naming it,
#     the snapshot it took is gone all the same (it is removed while the point is saved), the
#     repository checks clean, and the next backup is an incremental from the last point.
"$H" disk write web 0 --offset 64M --from <(head -c 4M /dev/urandom) >/dev/null
chattr +i repo/points || fail "chattr +i (the scratch folder must be on ext4 or XFS)"
rc=0
"$V" backup --source "$SRC" --vm web >out.txt 2>err.txt || rc=$?
chattr -i repo/points
[ "$rc" = 1 ] || fail "a backup whose point cannot be saved exited $rc: $(cat err.txt)"
grep -q "points" err.txt || fail "the error does not name the points folder: $(cat err.txt)"
"$H" --json snapshot list web > snaps.json
[ "$(field snaps.json 'len(j)')" = 0 ] || fail "a snapshot was left: $(cat snaps.json)"
"$V" check >/dev/null || fail "check after a point that could not be saved"
"$V" backup --source "$SRC" --vm web --json > b15.json || fail "the backup after"
[ "$(field b15.json 'j["disks"][0]["mode"]')" = incremental ] || fail "not an incremental: $(cat b15.json)"
"$V" restore "$(field b15.json 'j["id"]')" --to-file w15.raw >/dev/null || fail "restore b15"
"$H" disk read web 0 --offset 0 --length 256M | cmp -s - w15.raw || fail "b15 differs from the disk"
rm -f w15.raw

# 16. The catalog opens beside the backup, not before it: one that cannot be opened still fails
#     the backup (exit 1, naming it) before a point is made, and the snapshot is gone.
VMBACKUP_CACHE_DIR=$SCRATCH/cache16 "$V" list >/dev/null || fail "list into a new cache folder"
cat_db=$(ls -d "$SCRATCH"/cache16/*/catalog.db)
rm -f "$cat_db"*
mkdir "$cat_db"
points_before=$(ls repo/points | wc -l)
rc=0
VMBACKUP_CACHE_DIR=$SCRATCH/cache16 "$V" backup --source "$SRC" --vm web >out.txt 2>err.txt || rc=$?
rm -rf "$SCRATCH/cache16"
[ "$rc" = 1 ] || fail "a backup whose catalog cannot be opened exited $rc: $(cat err.txt)"
grep -q "catalog" err.txt || fail "the error does not name the catalog: $(cat err.txt)"
[ "$(ls repo/points | wc -l)" = "$points_before" ] || fail "a point was made without a catalog"
"$H" --json snapshot list web > snaps.json
[ "$(field snaps.json 'len(j)')" = 0 ] || fail "a snapshot was left: $(cat snaps.json)"
"$V" backup --source "$SRC" --vm web --json > b16.json || fail "the backup after the catalog came back"
[ "$(field b16.json 'j["disks"][0]["mode"]')" = incremental ] || fail "not an incremental: $(cat b16.json)"

# 13. In-place restores keep thin disks thin: what is zero in the point becomes a hole, on the
#     changed-areas path and on the whole-disk path (after a hard power-off).
"$H" vm create thin --disk 128M --cbt >/dev/null
"$H" vm power-on thin >/dev/null
"$H" disk write thin 0 --offset 0 --from <(head -c 3M rand) >/dev/null
"$V" backup --source "$SRC" --vm thin --json > t1.json || fail "backup thin"
T1=$(field t1.json 'j["id"]')
"$H" disk read thin 0 --offset 0 --length 128M > t1.raw
allocated() { echo $(( $(stat -c %b ds/thin/thin-flat.vmdk) * 512 / 1048576 )); }
for path in "changed areas" "whole disk"; do
  "$H" disk write thin 0 --offset 8M --from <(head -c 96M /dev/urandom) >/dev/null
  [ "$(allocated)" -ge 96 ] || fail "the guest's writes did not allocate ($(allocated) MiB)"
  if [ "$path" = "whole disk" ]; then "$H" vm power-off thin --hard >/dev/null; else "$H" vm power-off thin >/dev/null; fi
  "$V" restore "$T1" --in-place --source "$SRC" --verify --json > tr.json || fail "in-place ($path)"
  [ "$(field tr.json 'j["disks"][0]["mode"]')" = "$path" ] || fail "mode: $(cat tr.json)"
  "$H" disk read thin 0 --offset 0 --length 128M | cmp -s - t1.raw || fail "in-place ($path) differs"
  [ "$(allocated)" -le 8 ] || fail "the $path in-place restore left $(allocated) MiB allocated for 3 MiB of data"
  "$H" vm power-on thin >/dev/null
done

# 14. restore --verify re-reads only what can hold data: a 256 GiB disk holding 1 MiB restores
#     and verifies (to a file, and in place after a hard power-off) in well under a minute,
#     where reading it whole would take far longer.
"$H" vm create huge --disk 256G --cbt >/dev/null
"$H" vm power-on huge >/dev/null
"$H" disk write huge 0 --offset 100G --from <(head -c 1M rand) >/dev/null
"$V" backup --source "$SRC" --vm huge --json > h.json || fail "backup of a huge thin disk"
timeout 60 "$V" restore "$(field h.json 'j["id"]')" --to-file huge.raw --verify >/dev/null \
  || fail "restore --verify of a huge thin disk to a file"
[ "$(stat -c %b huge.raw)" -le 4096 ] || fail "the restored file is not sparse"
rm -f huge.raw
"$H" vm power-off huge --hard >/dev/null
timeout 60 "$V" restore "$(field h.json 'j["id"]')" --in-place --source "$SRC" --verify >/dev/null \
  || fail "in-place restore --verify of a huge thin disk"

# 12. Damage anywhere in a repository is a failure (exit 1), never "bad command line" (2) and
#     never a crash: every kind of object, truncated or with bytes flipped, under every reader.
"$V" init --repo dmg >/dev/null
"$H" vm create tiny --disk 8M --cbt >/dev/null
"$H" vm power-on tiny >/dev/null
"$H" disk write tiny 0 --offset 0 --from <(head -c 3M rand) >/dev/null
"$V" backup --repo dmg --source "$SRC" --vm tiny >/dev/null || fail "backup into dmg"
"$H" disk write tiny 0 --offset 5M --pattern 0x35 --length 64K >/dev/null
"$V" backup --repo dmg --source "$SRC" --vm tiny >/dev/null || fail "backup into dmg"
for victim in $(find dmg/config dmg/index dmg/points dmg/packs dmg/keys -type f | sort); do
  for how in truncate flip json; do
    rm -rf d2 && cp -a dmg d2
    f=d2/${victim#dmg/}
    case $how in
      truncate) truncate -s $(( $(stat -c %s "$f") / 2 )) "$f" ;;
      flip) python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//3]^=0x5a; open(p,'wb').write(b)" "$f" ;;
      json) [ "${victim#dmg/config}" != "$victim" ] && sed -i 's/"chunk_size": 65536/"chunk_size": "64K"/' "$f" || continue ;;
    esac
    for cmd in "list" "show latest" "verify" "check" "restore latest --to-file d2.raw" \
               "backup --source $SRC --vm tiny"; do
      rc=0
      timeout 120 "$V" $cmd --repo d2 >/dev/null 2>err.txt || rc=$?
      rm -rf d2.raw .vmbackup-partial.*
      case $rc in
        0|1) ;;
        *) fail "'$cmd' on $victim ($how) exited $rc: $(cat err.txt)" ;;
      esac
      grep -q "internal error" err.txt && fail "'$cmd' on $victim ($how): $(cat err.txt)"
    done
  done
done
rm -rf d2 dmg
echo "ok: data safety"
