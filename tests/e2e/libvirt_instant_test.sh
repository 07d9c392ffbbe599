#!/usr/bin/env bash
# Instant recovery under libvirt (a domain with no OS under TCG: it idles in SeaBIOS, and the
# running QEMU writes its disk itself through HMP qemu-io, as a guest would): `restore
# --instant` defines and starts a new domain whose disks are qcow2 overlays over the point's
# exports; its writes stay in the overlays; the domain survives a restart of the export
# (`instant reconnect`); `instant migrate` copies the disks while it runs (at the bandwidth asked
# for) and pivots, after which the domain needs no export and its disks equal the point plus its
# writes; `instant stop` removes everything; a point without a libvirt definition is refused.
source "$(dirname "$0")/functions.sh"
libvirt_setup
requires nbdkit qemu-img python3
V=$VMBACKUP
export VMBACKUP_REPO=$SCRATCH/repo VMBACKUP_INSTANT_DIR=$SCRATCH/instant
trap '"$V" instant stop inst-copy >/dev/null 2>&1 || true; libvirt_cleanup; rm -rf "$SCRATCH"' EXIT
# QEMU's user reaches the exports' sockets through these folders.
chmod 755 "$SCRATCH"

qemu-img create -q -f qcow2 src.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x41 1M 2M" -c "write -P 0x42 40M 1M" src.qcow2 >/dev/null
define_domain inst-src src.qcow2
"$V" init >/dev/null
"$V" backup --source qemu:///system --vm inst-src --json > b.json || fail "backup"
P=$(json_field b.json 'j["id"]')
"$V" restore "$P" --to-file point.raw >/dev/null
LIBVIRT_DOMAINS+=(inst-copy)

# 1. Start: a running domain on overlays backed by the exports, in seconds.
"$V" --json restore "$P" --instant --to-vm --name inst-copy --source libvirt:///system \
  --disk-dir "$SCRATCH" > inst.json || fail "restore --instant: $(cat inst.json)"
[ "$(virsh domstate inst-copy)" = running ] || fail "the instant domain is not running"
echo "FIGURE: restore --instant to a running domain: $(json_field inst.json 'j["seconds_to_running"]') s"
OVL=$(json_field inst.json 'j["overlays"][0]')
virsh dumpxml inst-copy > live.xml
grep -q "protocol='nbd'" live.xml || fail "the domain's disk is not backed by the export: $(cat live.xml)"
"$V" --json instant list > list.json
[ "$(json_field list.json 'j[0]["name"]')" = inst-copy ] || fail "instant list: $(cat list.json)"
[ "$(json_field list.json 'j[0]["exports_running"]')" = 1 ] || fail "instant list: $(cat list.json)"

# 2. The domain reads the point and writes into its overlay, never into the repository.
# (qemu-io run by the monitor prints into the domain's log.)
LOG=/var/log/libvirt/qemu/inst-copy.log
hmp inst-copy 0 "read -P 0x41 1M 2M"
tail -5 "$LOG" | grep -q "read 2097152/2097152" || fail "the domain did not read the point: $(tail -5 "$LOG")"
hmp inst-copy 0 "write -P 0x77 8M 1M"
"$V" restore "$P" --to-file again.raw >/dev/null
cmp -s again.raw point.raw || fail "a write of the instant domain reached the repository"

# 3. The export killed (a dead export is listed so, and migrate refuses) and started again.
pkill -9 -f "nbdkit -P $SCRATCH/instant/inst-copy/" || fail "no export to kill"
sleep 0.5
"$V" --json instant list > list.json
[ "$(json_field list.json 'j[0]["exports_running"]')" = 0 ] || fail "a dead export is listed as running"
expect_failure 1 "instant reconnect inst-copy" -- "$V" instant migrate inst-copy --disk-dir "$SCRATCH"
"$V" instant reconnect inst-copy >/dev/null || fail "instant reconnect"
[ "$(virsh domstate inst-copy)" = running ] || fail "the domain does not run after the export's restart"

# 4. Migrate while it runs (its reads go through the restarted export), at most 16 MiB/s (QEMU's
#    block job carries the limit; the 64 MiB disk takes about 4 s): afterwards no export, no overlay, and its disk is the point
#    plus its writes.
"$V" instant migrate inst-copy --disk-dir "$SCRATCH" --bandwidth 16 >/dev/null 2> mig.err &
mig=$!
limit=""
for _ in $(seq 200); do
  info=$(virsh blockjob inst-copy vda --info --bytes 2>/dev/null || true)
  limit=$(grep -o "Bandwidth limit: [0-9]*" <<< "$info" || true)
  [ -n "$limit" ] && break
  sleep 0.05
done
wait $mig || fail "instant migrate: $(cat mig.err)"
[ "$limit" = "Bandwidth limit: 16777216" ] || fail "instant migrate --bandwidth 16: the copy ran with '$limit'"
[ "$(virsh domstate inst-copy)" = running ] || fail "the domain stopped during the migration"
virsh dumpxml inst-copy > live2.xml
! grep -q "protocol='nbd'" live2.xml || fail "the domain still reads from the export"
! pgrep -f "nbdkit -P $SCRATCH/instant/inst-copy/" >/dev/null || fail "the export still runs"
[ ! -e "$OVL" ] || fail "the overlay stayed"
virsh dumpxml --inactive inst-copy > defined.xml  # (a file: grep -q in a pipe can fail it)
grep -q "inst-copy-2000.qcow2" defined.xml || fail "the definition does not use the copy"
virsh destroy inst-copy >/dev/null
qemu-img convert -O raw "$SCRATCH/inst-copy-2000.qcow2" migrated.raw
model_write point.raw $((8 << 20)) $((1 << 20)) 0x77
cmp -s migrated.raw point.raw || fail "the migrated disk is not the point plus the domain's writes"
[ -z "$("$V" --json instant list | python3 -c 'import json,sys; print(json.load(sys.stdin) or "")')" ] ||
  fail "the migrated instance is still listed"

# 5. Stop throws an instance away; a point without a libvirt definition is refused.
"$V" restore "$P" --instant --to-vm --name inst-copy2 --source qemu:///system --disk-dir "$SCRATCH" >/dev/null ||
  fail "second instant restore"
LIBVIRT_DOMAINS+=(inst-copy2)
"$V" instant stop inst-copy2 >/dev/null || fail "instant stop"
! virsh dominfo inst-copy2 >/dev/null 2>&1 || fail "the stopped instance's domain stayed"
! ls "$SCRATCH"/inst-copy2-* >/dev/null 2>&1 || fail "the stopped instance's overlay stayed"
[ -z "$(ls "$SCRATCH/instant")" ] || fail "the stopped instance's record stayed"
expect_failure 1 "no instant recovery named inst-copy2" -- "$V" instant stop inst-copy2
expect_failure 1 "runs under libvirt" -- "$V" restore "$P" --instant --to-vm --name x --source vmhost:///tmp
echo PASS
