#!/usr/bin/env bash
# (Named _nbd_: the guest writes through vmhost's NBD export, which sanitizer builds lack.)
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
start_vmhost_serve pw
TP=$SHA256
export SRC="vsphere://root@127.0.0.1:$PORT?thumbprint=SHA256:$TP"
export MAP="[datastore1]=$SCRATCH/ds"
"$VMBACKUP" vsphere vms --source "$SRC" --password-file pw > vms.txt || fail "vsphere vms: $(cat vms.txt)"
grep -q "\[datastore1\] g/g.vmdk" vms.txt || fail "vsphere vms: $(cat vms.txt)"

guest_writer_script > writer.sh
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
check_guest_points p1.raw p2.raw p3.raw p4.raw
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
S=(--source "$SRC" --password-file pw)
id() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$1"; }
P1=$(id b1.json) P4=$(id b4.json)

# Restores to a new VM: over https (the files uploaded, the disk uploaded whole) and over san
# (the files made through the datastore map). Each VM holds the point, has a new identity, and
# may be powered on; a taken name is refused.
"$VMBACKUP" restore "$P4" --to-vm --name g-https "${S[@]}" --transport https > r-https.txt \
  || fail "restore to a new VM over https: $(cat r-https.txt)"
"$VMBACKUP" restore "$P4" --to-vm --name g-san "${S[@]}" --datastore-map "$MAP" --transport san \
  > r-san.txt || fail "restore to a new VM over san: $(cat r-san.txt)"
for v in g-https g-san; do
  "$H" disk read $v 0 > $v.raw || fail "read $v"
  cmp -s $v.raw p4.raw || fail "VM $v does not hold point 4"
  "$H" vm info $v > $v.info
  grep -q "MAY NOT" $v.info && fail "VM $v stayed blocked: $(cat $v.info)"
  [ "$(sed -n 1p $v.info | cut -d'(' -f2)" != "$("$H" vm info g | sed -n 1p | cut -d'(' -f2)" ] \
    || fail "VM $v has the uuid of g"
  "$H" vm power-on $v >/dev/null || fail "power on $v"
done
[ "$(du -k ds/g-https/g-https-flat.vmdk | cut -f1)" -lt 20000 ] || fail "the uploaded disk is not thin"
expect_failure 1 "already exists" -- "$VMBACKUP" restore "$P4" --to-vm --name g-san "${S[@]}"

# In place: the guest changes the disk, the VM is powered off, point 1 comes back. Over https
# this is refused before anything changes; over san only what changed since point 1 is written.
"$H" disk write g 0 --offset 30M --pattern 0xee --length 1M >/dev/null
"$H" vm power-off g >/dev/null
expect_failure 1 "cannot write parts of a disk" -- "$VMBACKUP" restore "$P1" --in-place "${S[@]}" --transport https
grep -q "nothing was changed" err.txt || fail "the https refusal: $(cat err.txt)"
"$H" snapshot list g | grep -q vmbackup && fail "the refused restore left its snapshot"
"$H" vm info g | grep -q "MAY NOT" && fail "the refused restore left a power-on block"
"$VMBACKUP" restore "$P1" --in-place "${S[@]}" --datastore-map "$MAP" --transport san --json > ip.json \
  || fail "in-place restore over san: $(cat ip.json err.txt 2>/dev/null)"
"$H" disk read g 0 > g-now.raw
cmp -s g-now.raw p1.raw || fail "the in-place restore did not bring point 1 back"
python3 -c "import json; d=json.load(open('ip.json'))['disks'][0]; assert d['mode']=='changed areas', d" \
  || fail "the in-place restore did not use CBT: $(cat ip.json)"
[ -z "$("$H" snapshot list g)" ] || fail "snapshots after the in-place restore: $("$H" snapshot list g)"
"$H" vm power-on g >/dev/null || fail "g may not be powered on after the restore"

# The nbd transport through endpoints the user names (--nbd-uri): here nbdkit with vmhost's own
# plugin, run per disk (exec:), serving the backup's snapshot by name, or for an in-place
# restore the restore snapshot's own layer ({mode} = restore).
PLUGIN=$(dirname "$VMBACKUP")/nbdkit-vmhost-plugin.so
NBD="exec:nbdkit -s $PLUGIN datastore=$SCRATCH/ds vm={vm} disk={disk} snapshot={snapshot_name} mode={mode}"
"$H" disk write g 0 --offset 12M --pattern 0x5c --length 256K >/dev/null
"$VMBACKUP" backup "${S[@]}" --transport nbd --nbd-uri "$NBD" --allow-crash-consistent --vm g \
  --no-progress --json > nb.json || fail "backup over nbd: $(cat nb.json)"
python3 -c "import json; d=json.load(open('nb.json'))['disks'][0]; assert d['transport']=='nbd', d" \
  || fail "not over nbd: $(cat nb.json)"
"$VMBACKUP" restore "$(id nb.json)" --to-file nb.raw --disk 2000 >/dev/null || fail "restore nb"
cmp -s nb.raw <("$H" disk read g 0) || fail "the point read over nbd differs from the disk"
expect_failure 1 "not TLS" -- "$VMBACKUP" backup "${S[@]}" --transport nbdssl --nbd-uri "$NBD" --vm g
expect_failure 2 "unknown placeholder {nope}" -- "$VMBACKUP" backup "${S[@]}" --transport nbd --nbd-uri "exec:x {nope}" --vm g
"$H" vm power-off g >/dev/null
"$VMBACKUP" restore "$P1" --in-place "${S[@]}" --transport nbd --nbd-uri "$NBD" > ipn.txt \
  || fail "in-place restore over nbd: $(cat ipn.txt)"
grep -q "via nbd" ipn.txt || fail "the in-place restore did not go over nbd: $(cat ipn.txt)"
cmp -s p1.raw <("$H" disk read g 0) || fail "the in-place restore over nbd did not bring point 1 back"
[ -z "$("$H" snapshot list g)" ] || fail "snapshots after the in-place restore over nbd"

# A session that ends in the middle of a backup (TerminateSession from another client while
# disk ranges are read): the file service's 401 and the API's NotAuthenticated both lead to a
# new login, and the point is whole.
"$H" vm create big --disk 128M >/dev/null
head -c 96M /dev/urandom > rand
"$H" vm power-on big >/dev/null && "$H" disk write big 0 --from rand >/dev/null && "$H" vm power-off big >/dev/null
kill $SERVER; wait $SERVER 2>/dev/null || true
start_vmhost_serve pw --log
SRC="vsphere://root@127.0.0.1:$PORT?thumbprint=SHA256:$TP"
cat > killer.py <<'PY'
import ssl, sys, time
from pyVim.connect import SmartConnect
port = int(sys.argv[1])
si = SmartConnect(host="127.0.0.1", port=port, user="root", pwd="api-secret",
                  sslContext=ssl._create_unverified_context())
sm = si.content.sessionManager
mine = sm.currentSession.key
print("ready", flush=True)
others = []
for _ in range(3000):  # the backup's session, once it logged in
    others = [s.key for s in sm.sessionList if s.key != mine]
    if others:
        break
    time.sleep(0.005)
assert others, "no other session"
for _ in range(3000):  # then, as soon as it reads its disk over /folder, its session ends
    if "GET /folder/big/big-flat.vmdk" in open("serve.log").read():
        break
    time.sleep(0.002)
sm.TerminateSession(others)
print("terminated", len(others))
PY
/usr/bin/python3 killer.py "$PORT" > killer.out 2>&1 &
KILLER=$!
for _ in $(seq 200); do grep -q ready killer.out && break; sleep 0.05; done
grep -q ready killer.out || fail "the session killer did not connect: $(cat killer.out)"
"$VMBACKUP" backup --source "$SRC" --password-file pw --transport https --reads-in-flight 1 \
  --vm big --no-progress --json > big.json || fail "the backup after a dropped session: $(cat big.json)"
wait $KILLER || fail "the session killer: $(cat killer.out)"
grep -q "GET /folder/big/big-flat.vmdk 401" serve.log \
  || fail "no read met the ended session: $(cat killer.out; grep -c 'GET /folder/big' serve.log) GETs"
"$VMBACKUP" restore "$(id big.json)" --to-file big.raw --disk 2000 >/dev/null || fail "restore big"
cmp -s big.raw <("$H" disk read big 0) || fail "the point made across a new login differs"

"$VMBACKUP" check >/dev/null || fail "check"
grep -q "api-secret" serve.out serve.log ./*.json 2>/dev/null && fail "the password was printed"
echo "ok: the vSphere driver against vmhost serve"
