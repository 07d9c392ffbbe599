#!/usr/bin/env bash
# S3 benchmark (issue "Repositories on S3"), side by side in one run on a local radosgw
# (tests/rgw/rgw-up): the 2 GiB mixed disk of bench/mixed_disk.py on the embedded host, backed up
# into a bucket and restored to a raw file; against the raw rate of the same server, measured by
# boto3 (AWS's client) uploading as many 16 MiB objects as the backup wrote packs, 4 at a time,
# and downloading them again with ranged GETs of 4 MiB; and `vmbackup copy` of the point from
# the bucket into a folder repository. Prints rates and the ratios.
# Usage: bench/s3_vs_raw.sh [WORKDIR, default /var/tmp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=$root/build/src/cli/vmbackup
H=$root/build/src/cli/vmhost
/usr/bin/python3 -c 'import boto3' || { echo "bench: python3-boto3 is missing" >&2; exit 1; }
base=${1:-/var/tmp}
work=$(mktemp -d "$base/vmbackup-s3bench-XXXXXX")
trap 'bash "$root/tests/rgw/rgw-up" --stop "$work/rgw" || true; rm -rf "$work"' EXIT
cd "$work"
# memstore holds ~2 bytes of RAM per byte stored: room for the backup and the raw objects.
eval "$(RGW_STORE_BYTES=$((8 << 30)) bash "$root/tests/rgw/rgw-up" "$work/rgw")"
export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
export VMHOST_DATASTORE=$work/ds VMBACKUP_CACHE_DIR=$work/cache
export VMBACKUP_REPO="s3:$S3_ENDPOINT/bench/repo"
now() { date +%s.%N; }

echo "== building the 2 GiB image"
python3 "$root/bench/mixed_disk.py"
"$H" init >/dev/null
"$H" vm create bench --disk 2G --cbt >/dev/null
"$H" vm power-on bench >/dev/null
for i in 0 1 2 3 4 5 6 7; do
  dd if=image.raw of=piece.raw bs=1M skip=$((i * 256)) count=256 status=none
  "$H" disk write bench 0 --offset $((i * 256))M --from piece.raw >/dev/null
done
rm -f piece.raw changes.bin
sync

echo "== vmbackup backup into the bucket"
"$V" init >/dev/null
t0=$(now); "$V" backup --source "vmhost://$work/ds" --vm bench --no-progress > full.txt; t1=$(now)
backup_s=$(python3 -c "print($t1 - $t0)")
"$V" stats --json > stats.json
echo "== vmbackup restore to a raw file"
t0=$(now); "$V" restore latest --to-file restored.raw --no-progress > restore.txt; t1=$(now)
restore_s=$(python3 -c "print($t1 - $t0)")
cmp -s restored.raw image.raw && same=identical || same=DIFFERENT
rm -f restored.raw
echo "== vmbackup copy from the bucket into a folder repository (no read-back)"
"$V" init --repo "$work/copy" >/dev/null
t0=$(now); "$V" copy --from "$VMBACKUP_REPO" --to "$work/copy" --no-verify > copy.txt; t1=$(now)
copy_s=$(python3 -c "print($t1 - $t0)")
rm -rf "$work/copy"

echo "== boto3: the same number of 16 MiB objects up and down, 4 at a time"
/usr/bin/python3 - "$backup_s" "$restore_s" "$same" "$copy_s" <<'PY'
import concurrent.futures, json, os, sys, time
import boto3
backup_s, restore_s, same = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
copy_s = float(sys.argv[4])
stats = json.load(open("stats.json"))
stored, packs = stats["repository_bytes"], stats["packs"]
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
s3.create_bucket(Bucket="raw")
n = max(1, round(stored / (16 << 20)))
body = open("image.raw", "rb").read(16 << 20)
def put(i):
    s3.put_object(Bucket="raw", Key=f"obj-{i}", Body=body)
def get(i):
    for off in range(0, 16 << 20, 4 << 20):
        s3.get_object(Bucket="raw", Key=f"obj-{i}", Range=f"bytes={off}-{off + (4 << 20) - 1}")["Body"].read()
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    t0 = time.time(); list(ex.map(put, range(n))); up = time.time() - t0
    t0 = time.time(); list(ex.map(get, range(n))); down = time.time() - t0
raw_up, raw_down = n * 16 / up, n * 16 / down
vb_up, vb_down = stored / 2**20 / backup_s, stored / 2**20 / restore_s
print(f"\nS3 benchmark on a local radosgw (memstore): 2 GiB mixed disk, {stored / 2**20:.0f} MiB "
      f"stored in {packs} packs")
print(f"  vmbackup backup   {backup_s:6.2f} s  {vb_up:7.1f} MiB/s of stored data")
print(f"  boto3 upload      {up:6.2f} s  {raw_up:7.1f} MiB/s ({n} x 16 MiB, 4 at a time)")
print(f"  vmbackup restore  {restore_s:6.2f} s  {vb_down:7.1f} MiB/s of stored data ({same})")
print(f"  boto3 download    {down:6.2f} s  {raw_down:7.1f} MiB/s (ranged GETs of 4 MiB, 4 at a time)")
print(f"  vmbackup copy     {copy_s:6.2f} s  {stored / 2**20 / copy_s:7.1f} MiB/s of stored data "
      f"(bucket to a folder repository)")
print(f"  ratios: backup {vb_up / raw_up:.2f}x the raw upload (target 0.8x), "
      f"restore {vb_down / raw_down:.2f}x the raw download (target 0.8x)")
PY
