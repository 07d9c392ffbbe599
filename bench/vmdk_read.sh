#!/usr/bin/env bash
# Reading a 2 GiB hosted-sparse (monolithicSparse) disk of mixed content to a raw file on tmpfs:
# `vmbackup vmdk cat` against `qemu-img convert -O raw`, side by side, best of RUNS runs each,
# with the source in the page cache. Prints seconds, throughput and the ratio.
#   RUNS (default 5), BENCH_DIR (default /tmp/vmbackup-bench), VMBACKUP (default build/...)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=${VMBACKUP:-$root/build/src/cli/vmbackup}
runs=${RUNS:-5}
dir=${BENCH_DIR:-/tmp/vmbackup-bench}
out=/dev/shm/vmbackup-bench-out
mkdir -p "$dir"
trap 'rm -f "$out".ours "$out".qemu' EXIT

if [ ! -f "$dir/mixed.vmdk" ]; then
  echo "making a 2 GiB mixed image (1 MiB pieces: random, random, zeros, text) ..."
  python3 - "$dir/mixed.raw" <<'PY'
import random, sys
rng = random.Random(2026)
with open(sys.argv[1], "wb") as f:
    for i in range(2048):
        kind = i % 4
        if kind < 2:
            f.write(rng.randbytes(1 << 20))
        elif kind == 2:
            f.write(bytes(1 << 20))
        else:
            line = b"2026-11-22T06:00:%02d host kernel: event %08d ok\n" % (i % 60, i)
            f.write((line * ((1 << 20) // len(line) + 1))[: 1 << 20])
PY
  qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$dir/mixed.raw" "$dir/mixed.vmdk"
  rm -f "$dir/mixed.raw"
fi
cat "$dir/mixed.vmdk" > /dev/null  # into the page cache

best() {  # best wall time of $runs runs of "$@"
  local b=999999 t
  for _ in $(seq "$runs"); do
    rm -f "$out".ours "$out".qemu
    t=$( { /usr/bin/time -f %e "$@" >/dev/null; } 2>&1 | tail -1)
    b=$(python3 -c "print(min($b, $t))")
  done
  echo "$b"
}
ours=$(best sh -c "'$V' vmdk cat '$dir/mixed.vmdk' > '$out.ours'")
qemu=$(best qemu-img convert -f vmdk -O raw "$dir/mixed.vmdk" "$out.qemu")
"$V" vmdk cat "$dir/mixed.vmdk" > "$out.ours"
qemu-img convert -f vmdk -O raw "$dir/mixed.vmdk" "$out.qemu"
qemu-img compare -q -f raw -F raw "$out.ours" "$out.qemu" || { echo "outputs differ!"; exit 1; }
python3 - "$ours" "$qemu" <<'PY'
import sys
ours, qemu = float(sys.argv[1]), float(sys.argv[2])
gib = 2.0
print("read a 2 GiB monolithicSparse disk (mixed content) to a raw file on tmpfs, best of runs")
print("%-34s %8s %10s" % ("tool", "seconds", "GiB/s"))
print("%-34s %8.3f %10.2f" % ("vmbackup vmdk cat", ours, gib / ours))
print("%-34s %8.3f %10.2f" % ("qemu-img convert -O raw", qemu, gib / qemu))
print("ratio (qemu-img time / vmbackup time): %.2fx %s" % (qemu / ours, "(target >= 1.0: met)" if qemu >= ours else "(target >= 1.0: NOT met)"))
PY
