#!/usr/bin/env bash
# `vmbackup mount` and `vmbackup umount` of a point whose disk has a GPT with FAT, ext4, XFS and
# NTFS: the whole disk as DIR/disk.raw, each file system read-only under DIR/partN with the
# files it had; the repository stays locked while mounted; umount refuses while busy and then
# leaves nothing mounted, attached or running, also after the servers were killed.
source "$(dirname "$0")/functions.sh"
source "$E2E_DIR/fs_disk.sh"
requires sgdisk mkfs.vfat mcopy mkfs.ext4 mkfs.xfs mkntfs ntfscp ntfs-3g losetup partx blkid \
  qemu-storage-daemon nbdkit python3
if [ "$(id -u)" != 0 ]; then
  [ "${VMBACKUP_REQUIRE_ALL:-0}" = 1 ] && fail "mounts need root"
  echo "SKIP: mounts need root" >&2
  exit 77
fi
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
M=$SCRATCH/mnt
# Whatever happens, nothing stays mounted or attached.
trap '"$V" umount "$M" >/dev/null 2>&1 || true; rm -rf "$SCRATCH"' EXIT

backup_fs_disk "$V" "$H" || fail "the test disk and its backup"

# `restore --to-file -` streams the disk.
"$V" restore latest --to-file - 2>/dev/null | cmp -s - disk.raw || fail "the streamed disk differs"

nothing_left() {
  ! grep -qF " $M" /proc/self/mountinfo || fail "still mounted: $(grep -F " $M" /proc/self/mountinfo)"
  ! losetup -a | grep -qF "$M/" || fail "a loop device stays attached: $(losetup -a)"
  ! pgrep -f "$M/" >/dev/null || fail "a server stays: $(pgrep -af "$M/")"
  [ -z "$(ls -A "$M")" ] || fail "$M is not empty: $(ls -A "$M")"
}

# 1. Mount: the disk, the file systems, their files.
mkdir "$M"
"$V" --json mount latest "$M" > mount.json || fail "mount: $(cat mount.json)"
cmp -s "$M/disk.raw" disk.raw || fail "DIR/disk.raw differs from the disk"
python3 - mount.json <<'PY' || fail "mount report: $(cat mount.json)"
import json, sys
j = json.load(open(sys.argv[1]))
parts = {p["partition"]: p for p in j["partitions"]}
assert sorted(parts) == [1, 2, 3, 4], parts
for n, fs in ((2, "ext4"), (3, "xfs"), (4, "ntfs")):
    assert parts[n]["filesystem"] == fs and parts[n]["dir"].endswith(f"/part{n}"), parts[n]
# FAT mounts where the kernel has vfat; otherwise the reason is given.
assert parts[1]["filesystem"] == "vfat" and (parts[1]["dir"] or parts[1]["not_mounted"]), parts[1]
PY
while IFS=$'\t' read -r part path sum mtime mode; do
  n=${part#p}
  [ -d "$M/part$n" ] || continue  # FAT without vfat in the kernel
  [ "$(sha256sum < "$M/part$n$path" | cut -d' ' -f1)" = "$sum" ] || fail "$M/part$n$path differs"
done < expected.txt
touch "$M/part2/new" 2>/dev/null && fail "a mounted file system took a write"
expect_failure 3 "shared lock of serve" -- "$V" gc --grace 0s
expect_failure 2 "is not empty" -- "$V" mount latest "$M"

# 2. umount refuses while a file system is busy, then tears everything down.
(cd "$M/part2" && exec sleep 60) &
BUSY=$!
sleep 0.2
expect_failure 1 "stays mounted" -- "$V" umount "$M"
kill $BUSY
wait $BUSY 2>/dev/null || true
"$V" umount "$M" >/dev/null || fail "umount"
nothing_left
[ -z "$(ls "$SCRATCH/repo/locks")" ] || fail "the mount's lock stayed"
expect_failure 1 "not a restore point mounted by vmbackup" -- "$V" umount "$M"

# 3. The servers killed under a mount: umount still removes everything.
"$V" mount latest "$M" >/dev/null || fail "mount again"
pkill -9 -f "$M/.vmbackup-mount/" || fail "no server to kill"
sleep 0.5
"$V" umount "$M" >/dev/null || fail "umount after the servers died"
nothing_left
# The killed export's lock is stale (its process is gone): the next user removes it.
"$V" gc --grace 0s >/dev/null 2>&1 || fail "gc after the killed export"
[ -z "$(ls "$SCRATCH/repo/locks")" ] || fail "a stale lock stayed after gc"
echo PASS
