#!/usr/bin/env bash
# The vSphere source against VMware's simulator vcsim (tests/vcsim, built from Debian's govmomi
# sources), with real VMDKs planted where vcsim keeps empty files: backups over the san and
# https transports, verified against the planted disks; certificate pinning; the password kept
# off command lines; snapshots removed on every exit path, leftovers of killed runs too.
source "$(dirname "$0")/functions.sh"
requires qemu-img python3 curl
V=$VMBACKUP
VCSIM=$("$E2E_DIR/../vcsim/build.sh") || fail "building vcsim"

export TMPDIR=$SCRATCH  # vcsim's datastore folders
printf 'Pa55 word\n' > pw
"$VCSIM" -info info.json -disk-mib 64 -user admin -password-file pw > vcsim.log 2>&1 &
VCSIM_PID=$!
trap 'kill $VCSIM_PID 2>/dev/null; wait $VCSIM_PID 2>/dev/null; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
[ -s info.json ] || fail "vcsim did not start: $(cat vcsim.log)"
info() { python3 -c "import json,sys; print(eval(sys.argv[1], {}, {'j': json.load(open('info.json'))}))" "$1"; }
PORT=$(info "j['url'].split(':')[2].split('/')[0]")
DS=$(info "j['datastores']['LocalDS_0']")

# Real disks: a vmfs descriptor with a flat file (VM0) and a monolithicSparse one (VM1).
rm -f "$DS"/DC0_H0_VM0/disk1*.vmdk "$DS"/DC0_H0_VM1/disk1*.vmdk
"$V" vmdk create "$DS/DC0_H0_VM0/disk1.vmdk" --size 64M --type vmfs >/dev/null
head -c 3M /dev/urandom > rand
"$V" vmdk write "$DS/DC0_H0_VM0/disk1.vmdk" --offset 1M --from rand >/dev/null
"$V" vmdk write "$DS/DC0_H0_VM0/disk1.vmdk" --offset 40M --pattern 0x41 --length 2M >/dev/null
qemu-img create -q -f vmdk "$DS/DC0_H0_VM1/disk1.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x5a 8M 5M" "$DS/DC0_H0_VM1/disk1.vmdk" >/dev/null

# The thumbprint, printed for pinning, is the certificate's.
"$V" vsphere thumbprint "127.0.0.1:$PORT" > tp.txt 2>/dev/null || fail "thumbprint"
TP=$(head -1 tp.txt)
WANT=$(openssl s_client -connect "127.0.0.1:$PORT" </dev/null 2>/dev/null \
  | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2)
[ "$TP" = "SHA256:$WANT" ] || fail "thumbprint $TP, openssl says $WANT"
SRC="vsphere://admin@127.0.0.1:$PORT?thumbprint=$TP"
S=(--source "$SRC" --password-file pw)

# Trust: no pin and no CA, or a wrong pin, is refused before the password is sent.
expect_failure 11 "not trusted" -- "$V" vsphere vms --source "vsphere://admin@127.0.0.1:$PORT" --password-file pw
BAD="SHA256:$(printf '%s' "$WANT" | tr '0-9A-F' '1-9A-F0')"
expect_failure 11 "$WANT" -- "$V" vsphere vms --source "vsphere://admin@127.0.0.1:$PORT?thumbprint=$BAD" --password-file pw
grep -qF "${BAD#SHA256:}" err.txt || fail "the refusal does not show the pinned thumbprint"
# The password: never in the URI, wrong is exit 11, and it never shows in any output.
expect_failure 2 "password does not belong in the URI" -- "$V" vsphere vms --source "vsphere://admin:x@127.0.0.1:$PORT"
printf 'guessed-Secret\n' > wrong
expect_failure 11 "InvalidLogin" -- "$V" vsphere vms --source "$SRC" --password-file wrong
grep -q "guessed-Secret" out.txt err.txt && fail "the password was printed"
VMBACKUP_VSPHERE_PASSWORD='Pa55 word' "$V" vsphere vms --source "$SRC" --json > vms.json || fail "password from the environment"
python3 - <<'PY' || fail "vsphere vms: $(cat vms.json)"
import json
vms = {v["vm"]: v for v in json.load(open("vms.json"))}
assert set(vms) >= {"DC0_H0_VM0", "DC0_H0_VM1"}, vms
d = vms["DC0_H0_VM0"]["disks"][0]
assert d["capacity"] == 64 << 20 and d["file"] == "[LocalDS_0] DC0_H0_VM0/disk1.vmdk", d
PY
KEY0=$(python3 -c "import json; print([v for v in json.load(open('vms.json')) if v['vm']=='DC0_H0_VM0'][0]['disks'][0]['device_key'])")
KEY1=$(python3 -c "import json; print([v for v in json.load(open('vms.json')) if v['vm']=='DC0_H0_VM1'][0]['disks'][0]['device_key'])")
snapshots() {  # VM: the names of its snapshots, one per line
  "$V" vsphere vms "${S[@]}" --json | python3 -c "import json,sys; [print(s) for v in json.load(sys.stdin) if v['vm']==sys.argv[1] for s in v['snapshots']]" "$1"
}
"$V" init --repo r >/dev/null
expect_failure 1 "no VM named nope" -- "$V" backup --repo r "${S[@]}" --vm nope
MAP="[LocalDS_0]=$DS"
# 1. A full over san; vcsim cannot tell what changed, and the report says so on the next one.
"$V" backup --repo r "${S[@]}" --datastore-map "$MAP" --transport san --vm DC0_H0_VM0 --json > b1.json \
  || fail "san backup"
python3 -c "import json; d=json.load(open('b1.json'))['disks'][0]; assert d['transport']=='san' and d['mode']=='full', d" \
  || fail "b1: $(cat b1.json)"
[ -z "$(snapshots DC0_H0_VM0)" ] || fail "the backup snapshot stayed: $(snapshots DC0_H0_VM0)"
# 2. Changes, then a second backup over https.
"$V" vmdk write "$DS/DC0_H0_VM0/disk1.vmdk" --offset 20M --pattern 0x42 --length 1M >/dev/null
"$V" backup --repo r "${S[@]}" --transport https --vm DC0_H0_VM0 --json > b2.json || fail "https backup"
python3 - <<'PY' || fail "b2: $(cat b2.json)"
import json
b = json.load(open("b2.json")); d = b["disks"][0]
assert d["transport"] == "https" and d["mode"] == "full" and b["parent"], b
assert "no change id" in d["full_reason"], d
PY
"$V" restore --repo r latest --vm DC0_H0_VM0 --disk "$KEY0" --to-file vm0.raw >/dev/null || fail "restore"
qemu-img compare -q -f raw -F vmdk vm0.raw "$DS/DC0_H0_VM0/disk1.vmdk" || fail "the https point differs from the disk"
P1=$(python3 -c "import json; print(json.load(open('b1.json'))['id'])")
"$V" restore --repo r "$P1" --disk "$KEY0" --to-file vm0-p1.raw >/dev/null || fail "restore p1"
cmp -s vm0.raw vm0-p1.raw && fail "the first point already holds the later change"
cmp -n 1M -i 1M:0 vm0-p1.raw rand || fail "the first point lacks the random data"
# A sparse VMDK made by qemu-img, over both transports.
for t in san https; do
  "$V" backup --repo r "${S[@]}" --datastore-map "$MAP" --transport $t --vm DC0_H0_VM1 >/dev/null || fail "VM1 over $t"
  "$V" restore --repo r latest --vm DC0_H0_VM1 --disk "$KEY1" --to-file vm1-$t.raw >/dev/null || fail "restore VM1"
  qemu-img compare -q -f raw -F vmdk vm1-$t.raw "$DS/DC0_H0_VM1/disk1.vmdk" || fail "VM1 over $t differs"
done

# 3. A read that fails in the middle (the flat file cut short): the job fails naming the
#    problem, and its snapshot goes.
cp "$DS/DC0_H0_VM0/disk1-flat.vmdk" flat.saved
truncate -s 30M "$DS/DC0_H0_VM0/disk1-flat.vmdk"
expect_failure 1 "disk1" -- "$V" backup --repo r "${S[@]}" --transport https --vm DC0_H0_VM0
[ -z "$(snapshots DC0_H0_VM0)" ] || fail "a failed backup left its snapshot"
cp flat.saved "$DS/DC0_H0_VM0/disk1-flat.vmdk"

# 4. A snapshot left by a killed run (made here by pyvmomi, another vSphere client) is removed.
/usr/bin/python3 - "$PORT" <<'PY' || fail "pyvmomi (Debian's python3-pyvmomi) could not make the leftover snapshot"
import ssl, sys, time
from pyVim.connect import SmartConnect, Disconnect
si = SmartConnect(host="127.0.0.1", port=int(sys.argv[1]), user="admin", pwd="Pa55 word",
                  sslContext=ssl._create_unverified_context())
vm = si.content.searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM0")
task = vm.CreateSnapshot_Task(name="vmbackup-2020-01-01T00:00:00Z", description="", memory=False, quiesce=False)
while task.info.state not in ("success", "error"):
    time.sleep(0.05)
assert task.info.state == "success"
Disconnect(si)
PY
[ "$(snapshots DC0_H0_VM0)" = "vmbackup-2020-01-01T00:00:00Z" ] || fail "the leftover is not there"
"$V" backup --repo r "${S[@]}" --datastore-map "$MAP" --vm DC0_H0_VM0 > b3.txt 2>&1 || fail "backup after a leftover: $(cat b3.txt)"
grep -q "vmbackup-2020-01-01T00:00:00Z" b3.txt || fail "the removal of the leftover was not reported: $(cat b3.txt)"
[ -z "$(snapshots DC0_H0_VM0)" ] || fail "snapshots remain: $(snapshots DC0_H0_VM0)"

"$V" verify --repo r >/dev/null || fail "verify"
grep -rq "Pa55 word" "$VMBACKUP_CACHE_DIR" r 2>/dev/null && fail "the password reached the repository or the catalog"
echo "ok: vSphere source against vcsim"
