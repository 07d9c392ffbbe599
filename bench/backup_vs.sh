#!/usr/bin/env bash
# Backup engine benchmark (issue "Backup and restore engine"), side by side in one run:
# a 2 GiB disk of mixed content (1 MiB pieces: random, random, zeros, text) on the embedded
# host; then 5% of it changed in scattered 64 KiB blocks of new random data. vmbackup backs up
# the VM (full, then incremental by CBT) and restores the incremental to a raw file; restic and
# borg back up the same image as a file (full, then again after the same changes); qemu-img
# convert copies the image (the copy limit; also with -t writeback, which flushes the copy at the
# end as vmbackup's restore does: plain convert leaves it in the page cache, not on the disk).
# Prints wall times, speeds, repository growth and vmbackup's peak RSS.
# Usage: bench/backup_vs.sh [WORKDIR on a disk file system, default /var/tmp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=$root/build/src/cli/vmbackup
H=$root/build/src/cli/vmhost
for c in restic borg qemu-img python3; do
  command -v $c >/dev/null || { echo "bench: $c is missing (scripts/install-deps installs it)" >&2; exit 1; }
done
base=${1:-/var/tmp}
work=$(mktemp -d "$base/vmbackup-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export VMHOST_DATASTORE=$work/ds VMBACKUP_REPO=$work/repo RESTIC_PASSWORD=bench VMBACKUP_CACHE_DIR=$work/cache
export BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
size() { du -sb "$1" | cut -f1; }

echo "== building the 2 GiB image and the change set"
python3 "$root/bench/mixed_disk.py"
"$H" init >/dev/null
"$H" vm create bench --disk 2G --cbt >/dev/null
"$H" vm power-on bench >/dev/null
for i in 0 1 2 3 4 5 6 7; do  # vmhost reads at most 1 GiB per write
  dd if=image.raw of=piece.raw bs=1M skip=$((i * 256)) count=256 status=none
  "$H" disk write bench 0 --offset $((i * 256))M --from piece.raw >/dev/null
done
rm -f piece.raw
flat=$work/ds/bench/bench-flat.vmdk
sync

apply_changes() {  # writes the change set into the VM and into image.raw
  python3 - "$H" <<'PY'
import subprocess, sys
h = sys.argv[1]
offs = [int(x) for x in open("changes.txt").read().split()]
data = open("changes.bin", "rb").read()
with open("image.raw", "r+b") as img:
    for i, off in enumerate(offs):
        block = data[i * 65536 : (i + 1) * 65536]
        img.seek(off)
        img.write(block)
        open("block.bin", "wb").write(block)
        subprocess.run([h, "disk", "write", "bench", "0", "--offset", str(off), "--from", "block.bin"],
                       check=True, stdout=subprocess.DEVNULL)
PY
}

echo "== qemu-img convert (the copy limit)"
t0=$(now); qemu-img convert -f raw -O raw "$flat" qemu.raw; t1=$(now)
qemu_s=$(secs "$t0" "$t1"); rm -f qemu.raw

echo "== vmbackup full"
"$V" init >/dev/null
t0=$(now); /usr/bin/time -o full.rss -f %M "$V" backup --source "vmhost://$work/ds" --vm bench --no-progress > full.txt; t1=$(now)
vb_full=$(secs "$t0" "$t1"); vb_size0=$(size repo)

echo "== restic full, borg full"
restic init -r restic >/dev/null 2>&1
t0=$(now); restic -r restic backup --host demo image.raw >/dev/null 2>&1; t1=$(now)
restic_full=$(secs "$t0" "$t1"); restic_size0=$(size restic)
borg init -e repokey borg >/dev/null 2>&1
t0=$(now); borg create borg::one image.raw >/dev/null 2>&1; t1=$(now)
borg_full=$(secs "$t0" "$t1"); borg_size0=$(size borg)

echo "== 5% changed in 1638 scattered 64 KiB blocks (in the VM and in the image file)"
apply_changes
sync

echo "== incrementals"
t0=$(now); "$V" backup --source "vmhost://$work/ds" --vm bench --no-progress > inc.txt; t1=$(now)
vb_inc=$(secs "$t0" "$t1"); vb_growth=$(( $(size repo) - vb_size0 ))
t0=$(now); restic -r restic backup --host demo image.raw >/dev/null 2>&1; t1=$(now)
restic_inc=$(secs "$t0" "$t1"); restic_growth=$(( $(size restic) - restic_size0 ))
t0=$(now); borg create borg::two image.raw >/dev/null 2>&1; t1=$(now)
borg_inc=$(secs "$t0" "$t1"); borg_growth=$(( $(size borg) - borg_size0 ))

echo "== vmbackup restore of the incremental to a raw file"
point=$("$V" list --json | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['id'])")
sync
t0=$(now); qemu-img convert -t writeback -f raw -O raw "$flat" qemu.raw; t1=$(now)
qemu_flushed_s=$(secs "$t0" "$t1"); rm -f qemu.raw
sync
t0=$(now); /usr/bin/time -o restore.rss -f %M "$V" restore "$point" --to-file restored.raw > restore.txt; t1=$(now)
vb_restore=$(secs "$t0" "$t1")
cmp -s restored.raw image.raw && same=identical || same=DIFFERENT

changed=$((1638 * 65536))
python3 - "$qemu_s" "$vb_full" "$vb_inc" "$vb_restore" "$restic_full" "$restic_inc" "$borg_full" \
  "$borg_inc" "$vb_growth" "$restic_growth" "$borg_growth" "$changed" "$same" "$qemu_flushed_s" \
  "$(cat full.rss)" "$(cat restore.rss)" <<'PY'
import sys
q, vf, vi, vr, rf, ri, bf, bi = map(float, sys.argv[1:9])
vg, rg, bg, ch = map(int, sys.argv[9:13])
same = sys.argv[13]
qf = float(sys.argv[14])
full_rss, restore_rss = int(sys.argv[15]) / 1024, int(sys.argv[16]) / 1024
gb = 2 * 1024**3 / 1e9
print(f"\nbackup benchmark: 2 GiB disk (half random, 1/4 zeros, 1/4 text), 5% changed in 64 KiB blocks")
print(f"{'':28}{'seconds':>9}{'GB/s':>8}   notes")
print(f"{'qemu-img convert (copy)':28}{q:9.2f}{gb/q:8.2f}")
print(f"{'vmbackup full':28}{vf:9.2f}{gb/vf:8.2f}   {rf/vf:.1f}x restic, {bf/vf:.1f}x borg, {q/vf:.2f}x qemu-img convert speed")
print(f"{'restic full':28}{rf:9.2f}{gb/rf:8.2f}")
print(f"{'borg full':28}{bf:9.2f}{gb/bf:8.2f}")
print(f"{'vmbackup incremental':28}{vi:9.2f}{'':8}   {ri/vi:.1f}x restic, {bi/vi:.1f}x borg; growth {vg/1e6:.1f} MB = {vg/ch:.2f}x the changed bytes")
print(f"{'restic incremental':28}{ri:9.2f}{'':8}   growth {rg/1e6:.1f} MB = {rg/ch:.2f}x")
print(f"{'borg incremental':28}{bi:9.2f}{'':8}   growth {bg/1e6:.1f} MB = {bg/ch:.2f}x")
print(f"{'qemu-img convert, flushed':28}{qf:9.2f}{gb/qf:8.2f}   -t writeback: on the disk at the end, as a restore is")
print(f"{'vmbackup restore (raw)':28}{vr:9.2f}{gb/vr:8.2f}   {q/vr:.2f}x qemu-img convert speed, {qf/vr:.2f}x flushed; {same}")
print(f"peak RSS: full backup {full_rss:.0f} MiB, restore {restore_rss:.0f} MiB")
PY
echo; cat full.txt inc.txt restore.txt
