#!/usr/bin/env bash
# File-level restore: a disk with a GPT holding FAT, ext4, XFS and NTFS partitions (built without
# mounting), backed up through vmhost; `files ls` lists the partitions and every file, `files get`
# returns identical bytes, times and modes, folders with their links; nothing is overwritten;
# bad requests get clear errors; an MBR disk numbers a logical partition 5, as Linux does.
source "$(dirname "$0")/functions.sh"
source "$E2E_DIR/fs_disk.sh"
requires sgdisk sfdisk mkfs.vfat mcopy mkfs.ext4 mkfs.xfs mkntfs ntfscp python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo

backup_fs_disk "$V" "$H" || fail "the test disk and its backup"

# 1. The partitions and their file systems.
"$V" --json files ls latest > parts.json || fail "files ls"
python3 - parts.json <<'PY' || fail "files ls: wrong partitions: $(cat parts.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["table"] == "gpt", j["table"]
got = [(p["partition"], p["offset"], p["description"], p["filesystem"]) for p in j["partitions"]]
MiB = 1 << 20
assert got[0] == (1, 1 * MiB, "ESP", "fat16"), got
assert got[1] == (2, 33 * MiB, "root", "ext4"), got
assert got[2][:3] == (3, 97 * MiB, "data"), got
assert got[3] == (4, 397 * MiB, "win", "ntfs"), got
PY

# 2. Every file is listed, with its size; then fetched: the same bytes, modification time and
#    (ext4, XFS) mode. FAT, ext4 and NTFS are read in process (libtsk); XFS through libguestfs's
#    appliance, started once for the listing and once for fetching both files.
check_file() {  # FILE SHA256 MTIME MODE (MTIME "-", seconds, or a window T0:T1)
  [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$2" ] || fail "$1 has other bytes"
  local t
  t=$(stat -c %Y "$1")
  case $3 in
    -) ;;
    *:*) [ "$t" -ge "${3%:*}" ] && [ "$t" -le "${3#*:}" ] || fail "$1 has mtime $t, outside $3" ;;
    *) [ "$t" = "$3" ] || fail "$1 has mtime $t, not $3" ;;
  esac
  [ "$4" = - ] || [ "$(stat -c %a "$1")" = "$4" ] || fail "$1 has mode $(stat -c %a "$1"), not $4"
}
listed() {  # LS.json PATH
  python3 - "$1" "$2" <<'PY' || fail "$2 is not listed in $1"
import json, sys
j = json.load(open(sys.argv[1]))
assert any(e["path"] == sys.argv[2] and e["type"] == "-" for e in j["entries"]), sys.argv[2]
PY
}
mkdir got
for n in 1 2 3 4; do
  "$V" --json files ls latest --partition "$n" -r / > "ls$n.json" 2> "ls$n.err" || fail "files ls -r partition $n: $(cat "ls$n.err")"
done
grep -q "appliance" ls3.err || fail "XFS was not read through the appliance"
while IFS=$'\t' read -r part path sum mtime mode; do
  n=${part#p}
  listed "ls$n.json" "$path"
  [ "$n" = 3 ] && continue  # fetched together below
  rm -rf got/* && "$V" files get latest --partition "$n" "$path" --to got >/dev/null || fail "files get $n $path"
  check_file "got/$(basename "$path")" "$sum" "$mtime" "$mode"
done < expected.txt
rm -rf got/* && "$V" files get latest --partition 3 /projects/plan.txt /projects/data.bin --to got \
  > /dev/null 2>&1 || fail "files get from XFS"
while IFS=$'\t' read -r part path sum mtime mode; do
  [ "$part" = p3 ] && check_file "got/$(basename "$path")" "$sum" "$mtime" "$mode"
done < expected.txt

# 3. A folder with everything in it, its link a link; nothing is overwritten.
rm -rf got/*
"$V" --json files get latest --partition 2 /home/alice --to got > get.json || fail "files get a folder"
[ "$(json_field get.json 'j["files"]')" = 3 ] || fail "files get /home/alice: $(cat get.json)"
[ "$(readlink got/alice/link-to-notes)" = "docs/notes with space.txt" ] || fail "the link was not kept"
cmp -s "got/alice/docs/notes with space.txt" "fs-src/root/home/alice/docs/notes with space.txt" || fail "a file in a folder differs"
[ "$(stat -c %Y got/alice)" = "$(stat -c %Y fs-src/root/home/alice)" ] || fail "the folder's time was not kept"
expect_failure 1 "in the target folder already" -- "$V" files get latest --partition 2 /home/alice --to got
ln -s /etc got/evil && expect_failure 1 "in the target folder already" -- \
  "$V" files get latest --partition 2 /etc --to got/evil/..

# 4. Bad requests.
expect_failure 1 "no /nothing/here in partition 2" -- "$V" files ls latest --partition 2 /nothing/here
expect_failure 1 "has no partition 9" -- "$V" files ls latest --partition 9
expect_failure 2 "choose one with --partition" -- "$V" files ls latest /
expect_failure 1 "has no disk 2001" -- "$V" files ls latest --disk 2001
expect_failure 2 "not .." -- "$V" files get latest --partition 2 /home/.. --to got
expect_failure 2 "is not a folder" -- "$V" files get latest --partition 2 /etc --to disk.raw

# 5. An MBR disk numbers its partitions as Linux does: the primary one 1, the extended container
#    2 (no file system, not listed), the logical one inside it 5.
rm -rf r1 r5 && mkdir -p r1 r5 && echo "primary one" > r1/one.txt && echo "logical five" > r5/five.txt
truncate -s 10M p1.img && mkfs.ext4 -q -F -d r1 p1.img
truncate -s 20M p5.img && mkfs.ext4 -q -F -d r5 p5.img
truncate -s 64M mbr.raw
printf 'label: dos\nstart=2048, size=20480, type=83\nstart=24576, size=81920, type=5\nstart=26624, size=40960, type=83\n' \
  | sfdisk -q mbr.raw || fail "sfdisk"
dd if=p1.img of=mbr.raw bs=512 seek=2048 conv=notrunc,sparse status=none
dd if=p5.img of=mbr.raw bs=512 seek=26624 conv=notrunc,sparse status=none
"$H" vm create mbr --disk 64M >/dev/null && "$H" vm power-on mbr >/dev/null
write_sparse "$H" mbr 0 mbr.raw || fail "write the MBR disk"
"$H" vm power-off mbr >/dev/null
"$V" backup --source "vmhost://$VMHOST_DATASTORE" --vm mbr >/dev/null || fail "back up the MBR disk"
"$V" --json files ls latest --vm mbr > mbr.json || fail "files ls of the MBR disk"
python3 - mbr.json <<'PY' || fail "MBR partitions: $(cat mbr.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["table"] == "dos", j["table"]
got = [(p["partition"], p["offset"], p["filesystem"]) for p in j["partitions"]]
assert got == [(1, 1 << 20, "ext4"), (5, 26624 * 512, "ext4")], got
PY
rm -rf got/* && "$V" files get latest --vm mbr --partition 5 /five.txt --to got >/dev/null \
  || fail "files get from the logical partition"
cmp -s got/five.txt r5/five.txt || fail "the logical partition's file differs"
echo PASS
