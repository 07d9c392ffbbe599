# make_fs_disk OUT.raw: a disk with a GPT holding FAT, ext4, XFS and NTFS partitions, built
# with userspace tools only (no mount, no root needed for the file systems):
#   p1 FAT16 "ESP" 32 MiB at 1 MiB    /EFI/BOOT/README.TXT
#   p2 ext4 "root" 64 MiB at 33 MiB   /home/alice/{report.txt,big.bin (20 MiB),docs/notes with
#                                      space.txt,link-to-notes ->}, /etc/os-release, /bin/tool (0755)
#   p3 XFS "data" 300 MiB at 97 MiB   /projects/{plan.txt,data.bin (5 MiB)}
#   p4 NTFS "win" 24 MiB at 397 MiB   /invoice.txt, /photo.bin (3 MiB)
# It leaves expected.txt: "p<N> <path> <sha256> <mtime> <mode octal>" (tab-separated; "-" where
# a value is not checked) for each file, and
# the source tree in fs-src/ (for timestamps). Requires sgdisk, mkfs.vfat, mtools, mkfs.ext4,
# mkfs.xfs, mkntfs, ntfscp. With FS_DISK_DAMAGE=1 the ext4 file system is damaged on purpose
# (debugfs clears the inode of /home/alice/docs, whose entry stays: a folder the guest lost).
make_fs_disk() {
  local out=$1 MiB=$((1024 * 1024)) w=fs-src
  rm -rf "$w" && mkdir -p "$w"/{fat/EFI/BOOT,root/home/alice/docs,root/etc,root/bin,xfs,ntfs}
  # Fixed times, so that a fetched file's time can be checked against them.
  echo "FAT partition readme" > "$w/fat/EFI/BOOT/README.TXT"
  echo "Quarterly report: restore me" > "$w/root/home/alice/report.txt"
  printf 'file with a space\n' > "$w/root/home/alice/docs/notes with space.txt"
  head -c $((20 * MiB)) /dev/urandom > "$w/root/home/alice/big.bin"
  ln -s "docs/notes with space.txt" "$w/root/home/alice/link-to-notes"
  printf 'ID=debian\nVERSION_ID="12"\n' > "$w/root/etc/os-release"
  printf '#!/bin/sh\necho tool\n' > "$w/root/bin/tool" && chmod 0755 "$w/root/bin/tool"
  chmod 0640 "$w/root/home/alice/report.txt"
  echo "project plan v3" > "$w/xfs/plan.txt"
  head -c $((5 * MiB)) /dev/urandom > "$w/xfs/data.bin" && chmod 0600 "$w/xfs/data.bin"
  echo "Invoice 2026-001: 42 EUR" > "$w/ntfs/invoice.txt"
  head -c $((3 * MiB)) /dev/urandom > "$w/ntfs/photo.bin"
  find "$w" -exec touch -h -d "2025-06-01 12:34:56.123456789 UTC" {} +
  touch -d "2024-01-02 03:04:06 UTC" "$w/fat/EFI/BOOT/README.TXT"  # FAT keeps 2 s steps
  touch -d "2023-05-06 07:08:09.5 UTC" "$w/root/home/alice/big.bin"

  # mkfs.xfs and ntfscp give their files the current time: the mtime is "T0:T1", a window.
  local t0
  t0=$(date +%s)
  truncate -s $((32 * MiB)) p1.img
  mkfs.vfat -n ESP -h $((1 * MiB / 512)) p1.img >/dev/null
  MTOOLS_SKIP_CHECK=1 mmd -i p1.img ::/EFI ::/EFI/BOOT
  MTOOLS_SKIP_CHECK=1 mcopy -m -i p1.img "$w/fat/EFI/BOOT/README.TXT" ::/EFI/BOOT/README.TXT
  truncate -s $((64 * MiB)) p2.img
  mkfs.ext4 -q -F -L root -d "$w/root" p2.img
  if [ "${FS_DISK_DAMAGE:-}" = 1 ]; then
    debugfs -w -R "clri /home/alice/docs" p2.img >/dev/null 2>&1
  fi
  cat > xfs.proto <<EOF
dummy
0 0
d--755 0 0
projects d--755 1000 1000
plan.txt ---644 1000 1000 $PWD/$w/xfs/plan.txt
data.bin ---600 1000 1000 $PWD/$w/xfs/data.bin
\$
\$
EOF
  truncate -s $((300 * MiB)) p3.img
  mkfs.xfs -q -f -L data -p xfs.proto p3.img
  truncate -s $((24 * MiB)) p4.img
  mkntfs -q -F -Q -L win -p $((397 * MiB / 512)) -H 255 -S 63 p4.img >/dev/null 2>&1
  ntfscp -q p4.img "$w/ntfs/invoice.txt" /invoice.txt
  ntfscp -q p4.img "$w/ntfs/photo.bin" /photo.bin

  local window="$t0:$(($(date +%s) + 1))"
  rm -f "$out"
  truncate -s $((422 * MiB)) "$out"
  sgdisk -a 2048 \
    -n 1:$((1 * MiB / 512)):+$((32 * MiB / 512)) -t 1:EF00 -c 1:ESP \
    -n 2:$((33 * MiB / 512)):+$((64 * MiB / 512)) -t 2:8300 -c 2:root \
    -n 3:$((97 * MiB / 512)):+$((300 * MiB / 512)) -t 3:8300 -c 3:data \
    -n 4:$((397 * MiB / 512)):+$((24 * MiB / 512)) -t 4:0700 -c 4:win \
    "$out" >/dev/null
  local n off
  for n in 1 2 3 4; do
    off=$(case $n in 1) echo 1 ;; 2) echo 33 ;; 3) echo 97 ;; 4) echo 397 ;; esac)
    dd if=p$n.img of="$out" bs=1M seek="$off" conv=notrunc,sparse status=none
  done
  rm -f p?.img xfs.proto
  {
    local f
    for f in fat/EFI/BOOT/README.TXT; do
      printf '%s\t%s\t%s\t%s\t%s\n' "p1" "/${f#fat/}" "$(sha256sum < "$w/$f" | cut -d' ' -f1)" "$(stat -c %Y "$w/$f")" "-"
    done
    for f in home/alice/report.txt home/alice/big.bin "home/alice/docs/notes with space.txt" etc/os-release bin/tool; do
      printf '%s\t%s\t%s\t%s\t%s\n' "p2" "/$f" "$(sha256sum < "$w/root/$f" | cut -d' ' -f1)" "$(stat -c %Y "$w/root/$f")" "$(stat -c %a "$w/root/$f")"
    done
    for f in plan.txt data.bin; do
      printf '%s\t%s\t%s\t%s\t%s\n' "p3" "/projects/$f" "$(sha256sum < "$w/xfs/$f" | cut -d' ' -f1)" "$window" "$(stat -c %a "$w/xfs/$f")"
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "p4" "/invoice.txt" "$(sha256sum < "$w/ntfs/invoice.txt" | cut -d' ' -f1)" "$window" "-"
    printf '%s\t%s\t%s\t%s\t%s\n' "p4" "/photo.bin" "$(sha256sum < "$w/ntfs/photo.bin" | cut -d' ' -f1)" "$window" "-"
  } > expected.txt
}

# write_sparse VMHOST VM DISK FILE: writes FILE's data (not its holes) into the VM's disk as
# the guest would (the VM powered on).
write_sparse() {
  local h=$1 vm=$2 disk=$3 file=$4 off len
  while read -r off len; do
    dd if="$file" of=seg.bin bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none
    "$h" disk write "$vm" "$disk" --offset "$off" --from seg.bin >/dev/null || return 1
  done < <(python3 - "$file" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, pos = os.fstat(fd).st_size, 0
while pos < end:
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    print(data, hole - data)
    pos = hole
PY
)
  rm -f seg.bin
}

# backup_fs_disk VMBACKUP VMHOST [VM]: make_fs_disk disk.raw, written into VM (default "fs") of
# the embedded host ($VMHOST_DATASTORE, made when missing) and backed up into the repository
# ($VMBACKUP_REPO, made when missing).
backup_fs_disk() {
  local v=$1 h=$2 vm=${3:-fs}
  make_fs_disk disk.raw
  [ -e "$VMHOST_DATASTORE" ] || "$h" init >/dev/null
  "$h" vm create "$vm" --disk 422M >/dev/null
  "$h" vm power-on "$vm" >/dev/null
  write_sparse "$h" "$vm" 0 disk.raw || return 1
  "$h" vm power-off "$vm" >/dev/null
  [ -e "$VMBACKUP_REPO/config" ] || "$v" init >/dev/null
  "$v" backup --source "vmhost://$VMHOST_DATASTORE" --vm "$vm" >/dev/null
}
