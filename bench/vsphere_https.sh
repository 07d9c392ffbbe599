#!/usr/bin/env bash
# vSphere transports benchmark (issue "vSphere source"), side by side in one run: a 2 GiB disk
# of mixed content (1 MiB pieces: random, random, zeros, text) planted as a vmfs VMDK in
# vcsim's datastore. Compares a full backup over `https` (the datastore file service) with curl
# downloading the same flat file to /dev/null (the copy limit over HTTP here), and with `san`.
# Prints wall times, rates and the ratios (ROUNDS rounds, default 3; medians).
# Usage: [ROUNDS=N] bench/vsphere_https.sh [WORKDIR on a disk file system, default /var/tmp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=$root/build/src/cli/vmbackup
VCSIM=$("$root/tests/vcsim/build.sh")
base=${1:-/var/tmp}
work=$(mktemp -d "$base/vmbackup-bench-XXXXXX")
cd "$work"
export TMPDIR=$work VMBACKUP_CACHE_DIR=$work/cache VMBACKUP_LOCK_DIR=$work/locks
printf 'bench\n' > pw
"$VCSIM" -info info.json -disk-mib 2048 -user bench -password-file pw > vcsim.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
read -r PORT DS < <(python3 -c "import json; j=json.load(open('info.json')); print(j['url'].split(':')[2].split('/')[0], j['datastores']['LocalDS_0'])")
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "== planting the 2 GiB disk"
rm -f "$DS"/DC0_H0_VM0/disk1*.vmdk
"$V" vmdk create "$DS/DC0_H0_VM0/disk1.vmdk" --size 2G --type vmfs >/dev/null
python3 - "$DS/DC0_H0_VM0/disk1-flat.vmdk" <<'PY'
import os, sys
line = b"2026-11-22T06:00:00 host kernel: event 00000000 ok\n"
text = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
with open(sys.argv[1], "r+b") as f:
    for p in range(2048):
        k = p % 4
        if k == 2:
            f.seek(1 << 20, 1)
        else:
            f.write(os.urandom(1 << 20) if k < 2 else text)
PY
cat "$DS/DC0_H0_VM0/disk1-flat.vmdk" > /dev/null  # warm the page cache for every reader
TP=$("$V" vsphere thumbprint "127.0.0.1:$PORT" 2>/dev/null | head -1)
SRC="vsphere://bench@127.0.0.1:$PORT?thumbprint=$TP"
URL="https://127.0.0.1:$PORT/folder/DC0_H0_VM0/disk1-flat.vmdk?dcPath=DC0&dsName=LocalDS_0"

# Rounds alternate the three, so a slow moment of the machine hits each alike; medians count.
rounds=${ROUNDS:-3}
curl_t=() https_t=() san_t=()
for round in $(seq "$rounds"); do
  echo "== round $round: curl (the flat file over HTTPS to /dev/null), https backup, san backup"
  t0=$(now); curl -sk -o /dev/null "$URL"; t1=$(now); curl_t+=("$(secs "$t0" "$t1")")
  rm -rf repo-https repo-san cache
  "$V" init --repo repo-https >/dev/null
  t0=$(now)
  "$V" backup --repo repo-https --source "$SRC" --password-file pw --transport https \
    --reads-in-flight "${READS:-4}" --vm DC0_H0_VM0 > https.txt
  t1=$(now); https_t+=("$(secs "$t0" "$t1")")
  "$V" init --repo repo-san >/dev/null
  t0=$(now)
  "$V" backup --repo repo-san --source "$SRC" --password-file pw --transport san \
    --datastore-map "[LocalDS_0]=$DS" --vm DC0_H0_VM0 > san.txt
  t1=$(now); san_t+=("$(secs "$t0" "$t1")")
done
grep -E "stages|changed" https.txt san.txt
python3 - "${curl_t[*]}" "${https_t[*]}" "${san_t[*]}" <<'PY'
import statistics, sys
c, h, s = ([float(x) for x in a.split()] for a in sys.argv[1:])
gib = 2.0
for name, t in (("curl", c), ("https backup", h), ("san backup", s)):
    print(f"{name}: {' '.join(f'{x:.2f}' for x in t)} s, median {statistics.median(t):.2f} s ({gib*1024/statistics.median(t):.0f} MiB/s)")
ratios = [ci / hi for ci, hi in zip(c, h)]
print(f"https backup / curl rate per round: {' '.join(f'{r:.2f}' for r in ratios)}")
print(f"https backup / curl rate (medians): {statistics.median(c)/statistics.median(h):.2f}x (target 0.8x)   "
      f"san / https: {statistics.median(h)/statistics.median(s):.2f}x faster")
PY
