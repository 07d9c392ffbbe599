#!/usr/bin/env bash
# Restore points as live disks, side by side in one run, on a 2 GiB point (embedded host): a
# GPT disk whose ext4 partition holds 1.2 GiB of files (random and text) and one 20 MiB file.
# Prints: the NBD export read whole (nbdcopy to /dev/null) against `restore --to-file`;
# `files get` of the 20 MiB file against the full restore; `mount` to the first byte of that
# file through the mounted ext4, and umount.
# Usage: bench/live_bench.sh [WORKDIR on a disk file system, default /var/tmp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=${VMBACKUP:-$root/build/src/cli/vmbackup}
H=${VMHOST:-$(dirname "$V")/vmhost}
for c in nbdcopy sgdisk mkfs.ext4 python3; do
  command -v $c >/dev/null || { echo "bench: $c is missing (scripts/install-deps installs it)" >&2; exit 1; }
done
source "$root/tests/e2e/fs_disk.sh"  # write_sparse
base=${1:-/var/tmp}
work=$(mktemp -d "$base/vmbackup-live-bench-XXXXXX")
trap '"$V" umount "$work/mnt" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cd "$work"
export VMHOST_DATASTORE=$work/ds VMBACKUP_REPO=$work/repo VMBACKUP_CACHE_DIR=$work/cache
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
MiB=$((1024 * 1024))

echo "== building the 2 GiB disk"
mkdir -p tree/data tree/logs tree/home
head -c $((20 * MiB)) /dev/urandom > tree/home/big.bin
for i in $(seq 1 24); do head -c $((32 * MiB)) /dev/urandom > "tree/data/blob$i.bin"; done
for i in $(seq 1 12); do
  python3 -c "import sys; sys.stdout.write(''.join(f'line {n} of log $i: all is well\n' for n in range(1200000)))" > "tree/logs/log$i.txt"
done
truncate -s $((2048 * MiB - 2 * MiB)) part.img
mkfs.ext4 -q -F -L data -d tree part.img
truncate -s $((2048 * MiB)) disk.raw
sgdisk -n 1:2048:+$((2048 * MiB / 512 - 2048 - 2048)) -t 1:8300 disk.raw >/dev/null
dd if=part.img of=disk.raw bs=1M seek=1 conv=notrunc,sparse status=none
rm -rf part.img tree
"$H" init >/dev/null
"$H" vm create live --disk 2G >/dev/null
"$H" vm power-on live >/dev/null
write_sparse "$H" live 0 disk.raw
"$H" vm power-off live >/dev/null
"$V" init >/dev/null
"$V" backup --source "vmhost://$work/ds" --vm live >/dev/null
echo "data in the point: $(du -sb repo | cut -f1) bytes stored for $(du -b --apparent-size disk.raw | cut -f1) bytes of disk"
sync

for round in 1 2 3; do
  echo "== round $round"
  rm -f restored.raw
  t0=$(now); "$V" restore latest --to-file restored.raw >/dev/null; t1=$(now)
  full=$(secs "$t0" "$t1")
  t0=$(now)
  "$V" serve latest --socket "$work/s.sock" --run 'nbdcopy "$uri" null:' >/dev/null
  t1=$(now)
  export_s=$(secs "$t0" "$t1")
  rm -rf got && mkdir got
  t0=$(now); "$V" files get latest /home/big.bin --to got >/dev/null; t1=$(now)
  get=$(secs "$t0" "$t1")
  mount_s=-
  if [ "$(id -u)" = 0 ]; then
    rm -rf mnt && mkdir mnt
    t0=$(now); "$V" mount latest mnt >/dev/null; head -c 1 mnt/part1/home/big.bin >/dev/null; t1=$(now)
    mount_s=$(secs "$t0" "$t1")
    t0=$(now); "$V" umount mnt >/dev/null; t1=$(now)
    umount_s=$(secs "$t0" "$t1")
  fi
  python3 - "$full" "$export_s" "$get" "$mount_s" "${umount_s:--}" <<'PY'
import sys
full, exp, get, mnt, umnt = sys.argv[1:]
full, exp, get = float(full), float(exp), float(get)
print(f"restore --to-file {full:.2f} s | export read whole (nbdcopy) {exp:.2f} s = {full / exp:.2f}x the restore's speed")
print(f"files get 20 MiB {get:.2f} s = {full / get:.1f}x faster than the full restore")
print(f"mount to first byte {mnt} s, umount {umnt} s")
PY
done
