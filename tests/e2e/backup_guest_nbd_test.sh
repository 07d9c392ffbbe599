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

guest_writer_script > writer.sh
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
check_guest_points p1.raw p2.raw p3.raw p4.raw
modes=$(python3 -c "import json; print(' '.join(json.load(open(f'b{n}.json'))['disks'][0]['mode'] for n in (1,2,3,4)))")
[ "$modes" = "full incremental incremental incremental" ] || fail "modes: $modes"
"$VMBACKUP" check >/dev/null || fail "check"
echo "ok: backups while the guest writes through NBD"
