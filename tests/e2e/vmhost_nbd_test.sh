#!/usr/bin/env bash
# vmhost's nbd and nbdssl transports (an nbdkit plugin) against real clients: qemu-io writes
# through a writable export land in the VM and in CBT; nbdinfo --map and nbdcopy read a
# snapshot export; nbds:// works with the right CA and fails with a wrong one; restore mode
# writes a snapshot's disk; a snapshot taken while a connection writes splits its writes.
source "$(dirname "$0")/functions.sh"
requires qemu-io nbdkit nbdinfo nbdcopy openssl python3
VH=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
H=("$VH" --datastore "$SCRATCH/ds")
"${H[@]}" init
"${H[@]}" vm create v --disk 32M --cbt
"${H[@]}" vm power-on v
"${H[@]}" disk write v 0 --offset 0 --length 1M --pattern 0x10
"${H[@]}" snapshot create v s0 >/dev/null
k0=$("${H[@]}" cbt change-id v --snapshot s0)

"${H[@]}" disk transports > transports.txt
grep -q '^hotadd  unavailable: ' transports.txt || fail "hotadd should be unavailable: $(cat transports.txt)"
grep -q '^nbd     available' transports.txt || fail "nbd should be available"

# 1. qemu-io writes through a writable export.
"${H[@]}" disk export v 0 --writable --nbd "$SCRATCH/w.sock" \
  --run 'qemu-io -f raw -c "write -P 0x61 3M 100k" -c "write -P 0x62 20M 4k" "$uri"' >/dev/null
"${H[@]}" disk read v 0 --offset 3M --length 100K | cmp - <(head -c 102400 /dev/zero | tr '\0' '\141') \
  || fail "writes through the export did not land in the VM"
"${H[@]}" snapshot create v s1 >/dev/null
"${H[@]}" --json cbt changes v --snapshot s1 --change-id "$k0" --all > changes.json
python3 - changes.json <<'PY' || fail "CBT did not record the export's writes"
import json, sys
areas = [(a["start"], a["start"] + a["length"]) for p in json.load(open(sys.argv[1])) for a in p["changed_area"]]
for s, e in [(3 << 20, (3 << 20) + 102400), (20 << 20, (20 << 20) + 4096)]:
    assert any(a <= s and e <= b for a, b in areas), (s, e, areas)
assert sum(b - a for a, b in areas) <= 4 * 65536, areas
PY

# 2. A snapshot export, read-only, read by nbdinfo --map and nbdcopy.
"${H[@]}" disk export v 0 --snapshot s1 --nbd "$SCRATCH/r.sock" \
  --run 'nbdinfo --map --json "$uri" > map.json; nbdcopy "$uri" copy.raw; qemu-io -f raw -c "write 0 512" "$uri" 2> ro.txt || true' >/dev/null
"${H[@]}" disk read v 0 --snapshot s1 | cmp - copy.raw || fail "nbdcopy of the snapshot export differs"
grep -qi "read-only\|permission\|not permitted" ro.txt || fail "the snapshot export accepted a write: $(cat ro.txt)"
python3 - map.json <<'PY' || fail "nbdinfo --map does not show the data"
import json, sys
m = json.load(open(sys.argv[1]))
data = [(e["offset"], e["offset"] + e["length"]) for e in m if e["type"] == 0]
for s in (0, 3 << 20, 20 << 20):
    assert any(a <= s < b for a, b in data), (s, data)
assert not any(a <= (10 << 20) < b for a, b in data), data
PY

# 3. nbdssl: TLS with the right CA works, with a wrong CA it fails.
make_ca "$SCRATCH/tls"
make_ca "$SCRATCH/other"
rm "$SCRATCH/other/server-key.pem" "$SCRATCH/other/server-cert.pem"
port=$((20000 + RANDOM % 20000))
"${H[@]}" disk export v 0 --snapshot s1 --nbd "127.0.0.1:$port" --tls "$SCRATCH/tls" --run "
  nbdinfo 'nbds://localhost:$port/?tls-certificates=$SCRATCH/tls' > tls-ok.txt 2>&1;
  nbdinfo 'nbds://localhost:$port/?tls-certificates=$SCRATCH/other' > tls-bad.txt 2>&1;
  nbdinfo 'nbd://localhost:$port/' > plain.txt 2>&1; true" >/dev/null
grep -q "with TLS" tls-ok.txt || fail "TLS with the right CA: $(cat tls-ok.txt)"
grep -q "certificate verification" tls-bad.txt || fail "TLS with a wrong CA did not fail: $(cat tls-bad.txt)"
grep -qE "requires TLS|Operation not supported" plain.txt || fail "plain NBD to a TLS export did not fail: $(cat plain.txt)"

# 4. Restore mode: write into snapshot s0's disk, then revert to it.
"${H[@]}" disk export v 0 --snapshot s0 --restore --nbd "$SCRATCH/x.sock" \
  --run 'qemu-io -f raw -c "write -P 0x77 5M 64k" "$uri"' >/dev/null
"${H[@]}" --json vm info v | python3 -c 'import json,sys; p = json.load(sys.stdin)["problems"]; assert not p, p' \
  || fail "the restore write broke the chain above the snapshot"
"${H[@]}" snapshot revert v s0
"${H[@]}" disk read v 0 --offset 5M --length 64K | cmp - <(head -c 65536 /dev/zero | tr '\0' '\167') \
  || fail "restored data not visible after revert"
if "${H[@]}" disk export v 0 --restore --nbd "$SCRATCH/y.sock" 2>err.txt; then fail "restore without snapshot"; fi
grep -q -- "--restore needs --snapshot" err.txt || fail "message: $(cat err.txt)"
if "${H[@]}" disk export v 0 --writable --nbd "$SCRATCH/y.sock" 2>err.txt; then fail "writable export of a powered-off VM"; fi
grep -q "powered off" err.txt || fail "message: $(cat err.txt)"

# 5. One connection keeps writing while a snapshot is taken: writes before it are in the
#    snapshot, writes after it are not.
"${H[@]}" vm power-on v
mkfifo cmds
"${H[@]}" disk export v 0 --writable --nbd "$SCRATCH/live.sock" \
  --run 'qemu-io -f raw "$uri" < cmds > qemu-io.log 2>&1' >/dev/null &
exporter=$!
exec 3>cmds
echo "write -P 0xa1 8M 64k" >&3
for _ in $(seq 100); do grep -q "wrote 65536" qemu-io.log 2>/dev/null && break; sleep 0.1; done
"${H[@]}" snapshot create v live >/dev/null
echo "write -P 0xa2 8M 64k" >&3
echo "quit" >&3
exec 3>&-
wait $exporter
"${H[@]}" disk read v 0 --snapshot live --offset 8M --length 64K | cmp - <(head -c 65536 /dev/zero | tr '\0' '\241') \
  || fail "the snapshot does not hold the write made before it"
"${H[@]}" disk read v 0 --offset 8M --length 64K | cmp - <(head -c 65536 /dev/zero | tr '\0' '\242') \
  || fail "the write after the snapshot did not reach the current state"
echo "ok: nbd and nbdssl transports"
