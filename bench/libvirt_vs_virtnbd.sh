#!/usr/bin/env bash
# The libvirt source against its peer virtnbdbackup (issue "KVM/QEMU source through libvirt"),
# side by side in one run, on the same data and domains: a 2 GiB qcow2 of mixed content (1 MiB
# pieces: random, random, zeros, text; the zeros unallocated) as the only disk of a domain with
# no OS under TCG; then 5% changed in 1638 scattered 64 KiB blocks of new random data, written
# by the running QEMU itself (HMP qemu-io), as ../shared/tools/guest/virtnbd-bench does.
# Per round, each tool gets a fresh copy of the disk in a domain of its own (virtnbdbackup
# refuses to run beside another tool's checkpoints) and does: full, changes, incremental, and
# a restore of the incremental point, checked byte for byte against the disk at that point:
#   floor      a libvirt pull backup read with nbdcopy into a raw file (the NBD path's own cost)
#   virtnbd    virtnbdbackup -l full / -l inc; virtnbdrestore (qcow2, its only output)
#   virtnbd-z  the same with -z (lz4): the size to compare a compressed repository with
#   vmbackup   vmbackup backup (full, then incremental by the checkpoint's dirty bitmap);
#              vmbackup restore --to-file (raw)
# Prints every round and the medians, with the ratios the issue asks for.
# Usage: bench/libvirt_vs_virtnbd.sh [--rounds N] [WORKDIR on a disk file system, default /var/tmp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
V=$root/build/src/cli/vmbackup
rounds=3
[ "${1:-}" = --rounds ] && { rounds=$2; shift 2; }
for c in virtnbdbackup virtnbdrestore nbdcopy qemu-img virsh python3; do
  command -v $c >/dev/null || { echo "bench: $c is missing (scripts/install-deps installs it)" >&2; exit 1; }
done
"$root/tests/libvirt/libvirtd-up"
export LIBVIRT_DEFAULT_URI=qemu:///system
base=${1:-/var/tmp}
work=$(mktemp -d "$base/vmbackup-libvirt-bench-XXXXXX")
chmod 755 "$work"
doms=()
cleanup() {
  for d in "${doms[@]}"; do
    virsh destroy "$d" >/dev/null 2>&1 || true
    virsh undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "== the 2 GiB disk, the change set, and the disk after it"
python3 "$root/bench/mixed_disk.py"
python3 - <<'PY'  # the blocks as files QEMU writes from, and the disk after the changes
import os
os.mkdir("blocks")
os.system("cp --sparse=always image.raw after.raw")
data = open("changes.bin", "rb").read()
with open("after.raw", "r+b") as img:
    for i, off in enumerate(int(x) for x in open("changes.txt").read().split()):
        block = data[i * 65536 : (i + 1) * 65536]
        open(f"blocks/{i:04d}.bin", "wb").write(block)
        img.seek(off)
        img.write(block)
PY
chmod -R a+rX blocks
qemu-img convert -f raw -O qcow2 image.raw base.qcow2

# domain NAME: a fresh copy of the disk as vda of a running domain with no OS.
domain() {
  local name=$1
  cp --sparse=always base.qcow2 "$name.qcow2"
  cat > "$name.xml" <<XML
<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$work/$name.qcow2'/><target dev='vda' bus='virtio'/></disk></devices>
</domain>
XML
  doms+=("$name")
  virsh define "$name.xml" >/dev/null
  virsh start "$name" >/dev/null
  # SeaBIOS keeps a core busy for seconds under TCG after a start: the steps begin once QEMU
  # idles (less than 10% of a core over a second), so that no tool pays for the boot.
  local pid t0 t1
  pid=$(pgrep -f "guest=$name,")
  for _ in $(seq 30); do
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 1; t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    [ $((t1 - t0)) -lt 10 ] && break
  done
}
changes() {  # the running QEMU writes the change set into its vda
  /usr/bin/python3 - "$1" "$work" <<'PY'  # Debian's python3-libvirt
import sys, libvirt, libvirt_qemu
dom, work = sys.argv[1], sys.argv[2]
d = libvirt.open("qemu:///system").lookupByName(dom)
dev, hmp = "/machine/peripheral/virtio-disk0/virtio-backend", libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
for i, off in enumerate(int(x) for x in open(f"{work}/changes.txt").read().split()):
    libvirt_qemu.qemuMonitorCommand(d, f'qemu-io -d {dev} "write -q -s {work}/blocks/{i:04d}.bin {off} 64k"', hmp)
libvirt_qemu.qemuMonitorCommand(d, f'qemu-io -d {dev} "flush"', hmp)
PY
}
gone() {  # gone DOMAIN
  virsh destroy "$1" >/dev/null 2>&1 || true
  virsh undefine "$1" --checkpoints-metadata >/dev/null 2>&1 || true
  rm -f "$1.qcow2"
}
# settle FILE: waits until no process holds FILE's image lock (virtnbdrestore returns before its
# qemu-nbd has let go of the file); counted in the restore's time, as virtnbd-bench does.
settle() {
  for _ in $(seq 200); do qemu-img info "$1" >/dev/null 2>&1 && return; sleep 0.01; done
}
same() {  # same IMAGE FORMAT EXPECTED_RAW
  qemu-img compare -q -f "$2" -F raw "$1" "$3" && echo identical || echo DIFFERENT
}

results=$work/results.tsv
: > "$results"
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" | tee -a "$results"; }
printf 'round\tstep\tseconds\tbytes\tcheck\n'
for r in $(seq 1 "$rounds"); do
  t0=$(now); qemu-img convert -f qcow2 -O raw base.qcow2 copy.raw; t1=$(now)
  row "$r" copy "$(secs "$t0" "$t1")" "$(du -B1 copy.raw | cut -f1)" "qemu-img convert -O raw"
  rm -f copy.raw

  d=bench-floor-$$; domain "$d"
  sock=$work/run-floor/nbd.sock; mkdir -p run-floor; chown libvirt-qemu: run-floor
  cat > pull.xml <<XML
<domainbackup mode='pull'><server transport='unix' socket='$sock'/>
  <disks><disk name='vda' backup='yes' type='file'><scratch file='$work/run-floor/s.qcow2'/></disk></disks></domainbackup>
XML
  t0=$(now)
  virsh -q backup-begin "$d" pull.xml >/dev/null
  nbdcopy "nbd+unix:///vda?socket=$sock" floor.raw
  virsh -q domjobabort "$d"
  t1=$(now)
  row "$r" floor-full "$(secs "$t0" "$t1")" "$(du -B1 floor.raw | cut -f1)" "$(same floor.raw raw image.raw)"
  rm -rf floor.raw run-floor; gone "$d"

  for z in "" -z; do
    d=bench-virtnbd$z-$$; domain "$d"; out=vnb$z
    t0=$(now); virtnbdbackup -d "$d" -l full -o "$out" -n $z >/dev/null 2>&1; t1=$(now)
    row "$r" "virtnbd$z-full" "$(secs "$t0" "$t1")" "$(du -sb "$out" | cut -f1)" ""
    changes "$d"
    before=$(du -sb "$out" | cut -f1)
    t0=$(now); virtnbdbackup -d "$d" -l inc -o "$out" -n $z >/dev/null 2>&1; t1=$(now)
    row "$r" "virtnbd$z-inc" "$(secs "$t0" "$t1")" "$(($(du -sb "$out" | cut -f1) - before))" ""
    t0=$(now)
    virtnbdrestore -i "$out" -o "rest$z" -L "$work/vnr.log" >/dev/null 2>&1
    img=$(ls -d "rest$z"/*.qcow2)  # named after the original disk file
    settle "$img"
    t1=$(now)
    row "$r" "virtnbd$z-restore" "$(secs "$t0" "$t1")" "$(du -B1 "$img" | cut -f1)" "$(same "$img" qcow2 after.raw)"
    rm -rf "$out" "rest$z"; gone "$d"
  done

  d=bench-vmbackup-$$; domain "$d"
  export VMBACKUP_REPO=$work/repo VMBACKUP_CACHE_DIR=$work/cache
  "$V" init >/dev/null
  t0=$(now); "$V" backup --source qemu:///system --vm "$d" --no-progress --json > full.json; t1=$(now)
  row "$r" vmbackup-full "$(secs "$t0" "$t1")" "$(du -sb repo | cut -f1)" ""
  python3 -c "import json; j=json.load(open('full.json')); d=j['disks'][0]; print('   vmbackup full: read', round(d['read_seconds'], 2), 'store', round(d['store_seconds'], 2), j['timings'])" >&2
  changes "$d"
  before=$(du -sb repo | cut -f1)
  t0=$(now); "$V" backup --source qemu:///system --vm "$d" --no-progress --json > inc.json; t1=$(now)
  mode=$(python3 -c "import json; print(json.load(open('inc.json'))['disks'][0]['mode'])")
  row "$r" vmbackup-inc "$(secs "$t0" "$t1")" "$(($(du -sb repo | cut -f1) - before))" "$mode"
  p=$(python3 -c "import json; print(json.load(open('inc.json'))['id'])")
  t0=$(now); "$V" restore "$p" --to-file rest.raw --disk 2000 >/dev/null; t1=$(now)
  row "$r" vmbackup-restore "$(secs "$t0" "$t1")" "$(du -B1 rest.raw | cut -f1)" "$(same rest.raw raw after.raw)"
  rm -rf repo cache rest.raw; gone "$d"
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
size = {}
for _, step, s, b, _c in rows:
    med.setdefault(step, []).append(float(s))
    size.setdefault(step, []).append(int(b or 0))
m = {k: statistics.median(v) for k, v in med.items()}
sz = {k: statistics.median(v) for k, v in size.items()}
print("\nmedians (s):", ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
changed = 1638 * 65536
print(f"full:    vmbackup {m['vmbackup-full']:.2f} s; virtnbdbackup {m['virtnbd-full']:.2f} s "
      f"-> {m['virtnbd-full'] / m['vmbackup-full']:.2f}x faster (target 1.3x); "
      f"floor {m['floor-full']:.2f} s -> {m['floor-full'] / m['vmbackup-full']:.2f}x the floor's speed (target 0.9x)")
print(f"size:    repository {sz['vmbackup-full'] / 1e6:.0f} MB; virtnbdbackup -z {sz['virtnbd-z-full'] / 1e6:.0f} MB "
      f"-> {sz['vmbackup-full'] / sz['virtnbd-z-full']:.2f}x (target at most 0.8x)")
print(f"inc:     vmbackup {m['vmbackup-inc']:.2f} s; virtnbdbackup {m['virtnbd-inc']:.2f} s "
      f"-> {m['virtnbd-inc'] / m['vmbackup-inc']:.2f}x faster (target 2x); growth "
      f"{sz['vmbackup-inc'] / changed:.3f}x the changed bytes (target at most 1.2x)")
print(f"restore: vmbackup {m['vmbackup-restore']:.2f} s; virtnbdrestore {m['virtnbd-restore']:.2f} s "
      f"-> {m['virtnbd-restore'] / m['vmbackup-restore']:.2f}x faster (target 2x)")
print(f"copy limit: qemu-img convert {m['copy']:.2f} s")
PY
