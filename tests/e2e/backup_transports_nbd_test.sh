#!/usr/bin/env bash
# The NBD transport modes of the backup driver: nbdkit with the vmhost plugin on a private
# socket, read with libnbd (nbdssl: TLS with a pre-shared key). Negotiation in the order given;
# in-place restore through NBD; a read error injected by nbdkit's error filter fails the job
# with a clear message and still removes the snapshot and stops nbdkit.
source "$(dirname "$0")/functions.sh"
requires nbdkit python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
SRC=vmhost://$SCRATCH/ds
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
snapshot_count() {
  "$H" --json snapshot list "$1" > snaps.json || fail "vmhost snapshot list $1"
  field snaps.json 'len(j)'
}
nbdkits() { pgrep -f "nbdkit.*nbdkit-vmhost-plugin.*datastore=$SCRATCH/ds" | wc -l; }

"$H" init >/dev/null
"$H" vm create n --disk 32M --disk 16M --cbt >/dev/null
"$H" vm power-on n >/dev/null
head -c 2M /dev/urandom > r2m
"$H" disk write n 0 --offset 3M --from r2m >/dev/null
"$H" disk write n 1 --offset 1M --from r2m >/dev/null
"$V" init >/dev/null

# hotadd is refused, nbd connects: the mode that connected is recorded.
"$V" backup --source "$SRC" --vm n --transport hotadd:nbd --json > b1.json || fail "backup over nbd"
[ "$(field b1.json 'j["disks"][0]["transport"]')" = nbd ] || fail "transport: $(cat b1.json)"
[ "$(field b1.json 'j["disks"][0]["reads_in_flight"]')" = 4 ] || fail "reads in flight on nbd: $(cat b1.json)"
"$H" disk read n 0 --offset 0 --length 32M > d0-1.raw
"$H" disk write n 0 --offset 20M --pattern 0x44 --length 192K >/dev/null
"$V" backup --source "$SRC" --vm n --transport nbdssl --json > b2.json || fail "backup over nbdssl"
[ "$(field b2.json 'j["disks"][0]["transport"]')" = nbdssl ] || fail "transport: $(cat b2.json)"
[ "$(field b2.json 'j["disks"][0]["mode"]')" = incremental ] || fail "mode: $(cat b2.json)"
[ "$(field b2.json 'j["disks"][0]["bytes_read"]')" = $((192 * 1024)) ] || fail "read: $(cat b2.json)"
"$V" restore "$(field b2.json 'j["id"]')" --to-file d0-2.raw >/dev/null || fail "restore"
"$H" disk read n 0 --offset 0 --length 32M | cmp -s - d0-2.raw || fail "the nbdssl point differs"
[ "$(nbdkits)" = 0 ] || fail "nbdkit left running"

# In place, writing through NBD into the snapshot.
"$H" vm power-off n >/dev/null
"$V" restore "$(field b1.json 'j["id"]')" --in-place --source "$SRC" --transport nbd --verify --json > ip.json \
  || fail "in-place restore over nbd"
[ "$(field ip.json 'j["disks"][0]["transport"]')" = nbd ] || fail "restore transport: $(cat ip.json)"
[ "$(field ip.json 'j["disks"][0]["bytes_written"] + j["disks"][0]["bytes_zeroed"]')" = $((192 * 1024)) ] || fail "restore wrote: $(cat ip.json)"
"$H" disk read n 0 --offset 0 --length 32M | cmp -s - d0-1.raw || fail "in-place restore over nbd differs"
"$H" vm power-on n >/dev/null

# A read error in the data path.
rc=0
VMBACKUP_TEST_NBDKIT_ARGS="--filter=error error-pread-rate=1 error=EIO" \
  "$V" backup --source "$SRC" --vm n --transport nbd --full >out.txt 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a read error: exit $rc: $(cat out.txt)"
grep -q "disk 2000 at .*Input/output error" out.txt || fail "the read error is not named: $(cat out.txt)"
[ "$(snapshot_count n)" = 0 ] || fail "the failed backup left its snapshot"
[ "$(nbdkits)" = 0 ] || fail "nbdkit left running after a failed backup"
[ -z "$(find /tmp -maxdepth 1 -name 'vmbackup-nbd-*' -newer b1.json)" ] || fail "nbd folders left in /tmp"
"$V" check >/dev/null || fail "check"
echo "ok: NBD transports"
