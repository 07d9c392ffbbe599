#!/usr/bin/env bash
# The vSphere driver end to end against `vmhost serve`, which has real disks and real CBT:
# a full and incrementals while the guest writes through a writable NBD export (qemu-io, block
# k at k*256K filled with byte k, in sequence), alternating the https and san transports. Each
# point must hold exactly the blocks written before its snapshot (a prefix of the sequence,
# no block torn) and the incrementals must come from CBT.
source "$(dirname "$0")/functions.sh"
requires qemu-io nbdkit python3 curl
export VMBACKUP H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
"$H" init >/dev/null
"$H" vm create g --disk 48M --cbt >/dev/null
"$H" vm power-on g >/dev/null
"$VMBACKUP" init >/dev/null
printf 'api-secret\n' > pw
"$H" serve --password-file pw --info-file info.json > serve.out 2> serve.err &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
[ -s info.json ] || fail "vmhost serve did not start: $(cat serve.err)"
PORT=$(python3 -c "import json; print(json.load(open('info.json'))['port'])")
TP=$(python3 -c "import json; print(json.load(open('info.json'))['sha256'])")
export SRC="vsphere://root@127.0.0.1:$PORT?thumbprint=SHA256:$TP"
export MAP="[datastore1]=$SCRATCH/ds"
"$VMBACKUP" vsphere vms --source "$SRC" --password-file pw > vms.txt || fail "vsphere vms: $(cat vms.txt)"
grep -q "\[datastore1\] g/g.vmdk" vms.txt || fail "vsphere vms: $(cat vms.txt)"

cmds=()
for k in $(seq 1 160); do
  cmds+=(-c "write -P $k $((k * 262144)) 64k" -c "sleep 15")
done
printf '%q ' qemu-io -f raw "${cmds[@]}" > writer.sh
cat > during.sh <<'SH'
set -e
uri=$1
bash -c "$(cat writer.sh) '$uri'" > writer.log 2>&1 &
w=$!
sleep 0.3
for n in 1 2 3; do
  t=https; [ $n = 2 ] && t=san
  "$VMBACKUP" backup --source "$SRC" --password-file pw --datastore-map "$MAP" --transport $t \
    --allow-crash-consistent --vm g --no-progress --json > "b$n.json"
  sleep 0.3
done
wait $w
SH
"$H" disk export g 0 --writable --nbd "$SCRATCH/g.sock" --run 'bash during.sh "$uri"' >/dev/null \
  || fail "the backups while the guest writes: $(cat writer.log b*.json 2>/dev/null | tail -20)"
"$VMBACKUP" backup --source "$SRC" --password-file pw --datastore-map "$MAP" --transport san \
  --allow-crash-consistent --vm g --no-progress --json > b4.json || fail "the last backup"

for n in 1 2 3 4; do
  p=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "b$n.json")
  "$VMBACKUP" restore "$p" --to-file "p$n.raw" --disk 2000 >/dev/null || fail "restore point $n"
done
python3 - <<'PY' || fail "a point does not match its snapshot"
prev = 0
for n in (1, 2, 3, 4):
    data = open(f"p{n}.raw", "rb").read()
    present = []
    for k in range(1, 161):
        block = data[k * 262144 : k * 262144 + 65536]
        if block == bytes(65536):
            continue
        assert block == bytes([k]) * 65536, f"point {n}: block {k} is torn or wrong"
        present.append(k)
    m = len(present)
    assert present == list(range(1, m + 1)), f"point {n}: blocks {present[:5]}... are not a prefix"
    assert m >= prev, f"point {n} has fewer blocks ({m}) than the point before ({prev})"
    prev = m
    print(f"point {n}: blocks 1..{m}")
assert prev == 160, "the last point lacks blocks"
PY
python3 - <<'PY' || fail "modes or transports: $(cat b*.json)"
import json
b = [json.load(open(f"b{n}.json"))["disks"][0] for n in (1, 2, 3, 4)]
assert [d["mode"] for d in b] == ["full", "incremental", "incremental", "incremental"], b
assert [d["transport"] for d in b] == ["https", "san", "https", "san"], b
# CBT, not a full read: an incremental reads what changed, far less than the disk.
for d in b[1:]:
    assert d["bytes_read"] < 40 << 20, d
PY
"$VMBACKUP" vsphere vms --source "$SRC" --password-file pw --json > after.json
python3 -c "import json; v=json.load(open('after.json'))[0]; assert v['snapshots']==[], v" \
  || fail "a backup snapshot stayed: $(cat after.json)"
"$VMBACKUP" check >/dev/null || fail "check"
echo "ok: the vSphere driver against vmhost serve"
