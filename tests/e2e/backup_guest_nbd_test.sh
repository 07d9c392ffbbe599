#!/usr/bin/env bash
# Backups while the guest keeps writing: qemu-io writes 160 blocks in sequence through a
# writable NBD export of the VM (block k at k*256K, filled with byte k), while a full and two
# incrementals run. Each point must hold exactly the blocks written before its snapshot: a
# prefix 1..m of the sequence, each block whole, and m grows from point to point. A last
# backup after the writer stopped holds all of them.
source "$(dirname "$0")/functions.sh"
requires qemu-io nbdkit python3
export VMBACKUP H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo SRC=vmhost://$SCRATCH/ds
"$H" init >/dev/null
"$H" vm create g --disk 48M --cbt >/dev/null
"$H" vm power-on g >/dev/null
"$VMBACKUP" init >/dev/null

cmds=()
for k in $(seq 1 160); do
  cmds+=(-c "write -P $k $((k * 262144)) 64k" -c "sleep 15")
done
printf '%q ' qemu-io -f raw "${cmds[@]}" > writer.sh
cat > during.sh <<'EOF'
set -e
uri=$1
bash -c "$(cat writer.sh) '$uri'" > writer.log 2>&1 &
w=$!
sleep 0.3
for n in 1 2 3; do
  "$VMBACKUP" backup --source "$SRC" --vm g --no-progress --json > "b$n.json"
  sleep 0.5
done
wait $w
EOF
"$H" disk export g 0 --writable --nbd "$SCRATCH/g.sock" --run 'bash during.sh "$uri"' >/dev/null \
  || fail "the backups while the guest writes: $(cat writer.log b*.json 2>/dev/null | tail -20)"
"$VMBACKUP" backup --source "$SRC" --vm g --no-progress --json > b4.json || fail "the last backup"

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
modes=$(python3 -c "import json; print(' '.join(json.load(open(f'b{n}.json'))['disks'][0]['mode'] for n in (1,2,3,4)))")
[ "$modes" = "full incremental incremental incremental" ] || fail "modes: $modes"
"$VMBACKUP" check >/dev/null || fail "check"
echo "ok: backups while the guest writes through NBD"
