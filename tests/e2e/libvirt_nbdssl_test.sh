#!/usr/bin/env bash
# The libvirt driver's nbdssl transport: a running domain's backup job served over TCP with TLS
# (what a remote libvirt needs: its unix sockets are out of reach), read with libnbd, which
# checks QEMU's certificate against our CA and shows its own (libvirtd-up sets qemu.conf's
# backup_tls_x509_cert_dir up):
# - a full and an incremental over nbdssl hold what the disk held, and say nbdssl;
# - a port another program holds moves the job to the next one;
# - a killed run's TCP job is ended by the next run, which its marker told where it serves;
# - a CA that does not know QEMU's certificate, and no certificates at all: clear errors, and
#   no job, scratch file or marker stays;
# - a "remote" libvirt (qemu+ext://127.0.0.2/..., this libvirtd through a relay): the job
#   listens on the URI's host with its scratch files in a folder there, by default over
#   nbdssl; nbd says why not; a domain that is off is refused; a restore to a new domain there
#   makes raw volumes in a storage pool, uploads them (sparse) and compares them; qcow2 and a
#   missing pool are refused, leaving nothing; a domain an interrupted restore left is replaced;
# - with nbd asked for, the job serves on a unix socket as before.
source "$(dirname "$0")/functions.sh"
libvirt_setup
requires openssl python3
TLS=$("$E2E_DIR/../libvirt/libvirtd-up" --tls-dir)
export VMBACKUP_REPO=$SCRATCH/repo
"$VMBACKUP" init >/dev/null
D=vmbt-ssl-$$
RUN=${VMBACKUP_LIBVIRT_RUN_DIR:-/var/lib/vmbackup/libvirt}
PORT=$((20000 + RANDOM % 20000))
SSL=(--source qemu:///system --transport nbdssl --nbd-tls-dir "$TLS" --nbd-port "$PORT")
qemu-img create -q -f qcow2 a.qcow2 16M
truncate -s 16M exp.raw
define_domain "$D" a.qcow2
virsh start "$D" >/dev/null || fail "start $D"
RUN=$RUN/$(virsh domuuid "$D")

wa() {  # wa PATTERN OFFSET: the running QEMU writes 64 KiB into vda; exp.raw follows
  hmp "$D" 0 "write -P $1 $2 64k"
  qemu-io -f raw -c "write -P $1 $2 64k" exp.raw >/dev/null
}
backup() {  # backup N [ARGS...]: over nbdssl, the report in bN.json
  local n=$1
  shift
  "$VMBACKUP" backup "${SSL[@]}" --vm "$D" --no-progress --json --allow-crash-consistent "$@" \
    > "b$n.json" 2> "b$n.err" || fail "backup $n: $(cat "b$n.err")"
  "$VMBACKUP" restore "$(json_field "b$n.json" "j['id']")" --to-file "r$n.raw" >/dev/null ||
    fail "restore $n"
  cmp -s "r$n.raw" exp.raw || fail "point $n differs from the disk at its backup"
  [ "$(json_field "b$n.json" "j['disks'][0]['transport']")" = nbdssl ] ||
    fail "backup $n did not read over nbdssl: $(cat "b$n.json")"
}
no_job_left() {  # no_job_left WHAT
  [ -z "$(virsh domjobinfo "$D" | grep -i backup)" ] || fail "$1: a backup job is left"
  [ ! -e "$RUN" ] || fail "$1: files are left in $RUN: $(ls -A "$RUN")"
}

echo "== a full and an incremental over TCP with TLS"
wa 0x11 1M
backup 1
[ "$(json_field b1.json "j['disks'][0]['mode']")" = full ] || fail "backup 1 is no full"
wa 0x12 5M
backup 2
[ "$(json_field b2.json "j['disks'][0]['mode']")" = incremental ] ||
  fail "backup 2 is no incremental: $(cat b2.json)"
no_job_left "after the backups"

echo "== a port another program holds, and a killed run's TCP job"
# Held on every address, IPv4 and IPv6, so that QEMU can bind none of them.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1]))); s.listen(1); print("ok", flush=True); time.sleep(600)' "$PORT" > holder.out &
holder=$!
for _ in $(seq 100); do [ -s holder.out ] && break; sleep 0.1; done
[ -s holder.out ] || fail "could not hold port $PORT"
wa 0x13 9M
caught=0
for try in 1 2 3 4 5; do
  "$VMBACKUP" backup "${SSL[@]}" --vm "$D" --no-progress --allow-crash-consistent \
    --reads-in-flight 1 > killed.out 2>&1 &
  k=$!
  # (While libvirt tries a port QEMU cannot bind, the job it is starting already shows.)
  for _ in $(seq 5000); do
    virsh backup-dumpxml "$D" 2>/dev/null | grep -F "port='$((PORT + 1))'" >/dev/null && break
    kill -0 $k 2>/dev/null || break
    sleep 0.002
  done
  kill -STOP $k 2>/dev/null || true
  if virsh backup-dumpxml "$D" > job.xml 2>/dev/null; then caught=1; fi
  kill -9 $k 2>/dev/null || true
  wait $k 2>/dev/null || true
  [ $caught = 1 ] && break
done
kill $holder
[ $caught = 1 ] || fail "could not kill a backup while its job ran: $(cat killed.out)"
grep -F "port='$((PORT + 1))'" job.xml >/dev/null || fail "the job did not move to the next port: $(cat job.xml)"
grep -F "tls='yes'" job.xml >/dev/null || fail "the job serves without TLS: $(cat job.xml)"
backup 3
grep -q "left by an interrupted backup" b3.json || fail "no note of the cleanup: $(cat b3.json)"
no_job_left "after the killed run"

echo "== a CA that does not know QEMU's certificate"
mkdir other
(
  cd other
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=another CA" \
    -keyout ca-key.pem -out ca-cert.pem 2>/dev/null
)
cp "$TLS/client-cert.pem" "$TLS/client-key.pem" other/
wa 0x14 12M
if "$VMBACKUP" backup --source qemu:///system --transport nbdssl --nbd-tls-dir "$PWD/other" \
  --nbd-port "$PORT" --vm "$D" --no-progress --allow-crash-consistent > bad.out 2>&1; then
  fail "a backup trusted a certificate its CA does not know"
fi
grep -Ei "certificate|verif|tls" bad.out >/dev/null || fail "the error does not name TLS: $(cat bad.out)"
no_job_left "after the refused certificate"
if "$VMBACKUP" backup --source qemu:///system --transport nbdssl --nbd-tls-dir "$PWD/none" \
  --vm "$D" --no-progress --allow-crash-consistent > none.out 2>&1; then
  fail "a backup over TLS ran without client certificates"
fi
grep -F "$PWD/none/ca-cert.pem" none.out >/dev/null || fail "the error does not name the file: $(cat none.out)"
no_job_left "without client certificates"

echo "== another host: qemu+ext://127.0.0.2/system, this libvirtd through a relay"
# libvirt's ext transport runs the relay, whose stdin and stdout are the connection; the URI's
# host makes the driver treat libvirt as remote: the job listens on 127.0.0.2 (a loopback
# address the test certificates name), its scratch files go to a folder "there".
cat > relay.py <<'PY'
#!/usr/bin/env python3
import os, socket, threading
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/libvirt/libvirt-sock")
def up():
    while (b := os.read(0, 65536)):
        s.sendall(b)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while (b := s.recv(65536)):
    os.write(1, b)
PY
chmod +x relay.py
REMOTE="qemu+ext://127.0.0.2/system?command=$PWD/relay.py"
mkdir -m 1777 there
wa 0x15 3M
SSL=(--source "$REMOTE" --nbd-tls-dir "$TLS" --remote-scratch-dir "$PWD/there")
"$VMBACKUP" backup "${SSL[@]}" --vm "$D" --no-progress --allow-crash-consistent \
  --reads-in-flight 1 > remote.out 2>&1 &
k=$!
seen=""
while kill -0 $k 2>/dev/null; do
  seen+=$(virsh backup-dumpxml "$D" 2>/dev/null | grep -E "server|scratch" || true)
  sleep 0.01
done
wait $k || fail "backup from the remote libvirt: $(cat remote.out)"
grep -F "name='127.0.0.2'" <<< "$seen" >/dev/null || fail "the job did not listen on the URI's host: $seen"
grep -F "$PWD/there/vmbackup-" <<< "$seen" >/dev/null || fail "the scratch files were not there: $seen"
[ -z "$(ls -A there)" ] || fail "scratch files are left there: $(ls -A there)"
no_job_left "after the remote backup"
backup_checked() {  # backup_checked N ARGS...: a backup whose point must hold exp.raw
  local n=$1
  shift
  "$VMBACKUP" backup "$@" --vm "$D" --no-progress --json --allow-crash-consistent > "b$n.json" \
    2> "b$n.err" || fail "backup $n: $(cat "b$n.err")"
  "$VMBACKUP" restore "$(json_field "b$n.json" "j['id']")" --to-file "r$n.raw" >/dev/null
  cmp -s "r$n.raw" exp.raw || fail "point $n differs from the disk at its backup"
}
wa 0x16 6M
backup_checked 5 "${SSL[@]}"
[ "$(json_field b5.json "j['disks'][0]['transport']")" = nbdssl ] || fail "backup 5 is not nbdssl"
[ "$(json_field b5.json "j['disks'][0]['mode']")" = incremental ] || fail "backup 5 is no incremental"
if "$VMBACKUP" backup "${SSL[@]}" --transport nbd --vm "$D" --no-progress \
  --allow-crash-consistent > nbd.out 2>&1; then
  fail "nbd read a remote job's export"
fi
grep -F "that is the nbdssl transport" nbd.out >/dev/null || fail "nbd does not say why: $(cat nbd.out)"
no_job_left "after nbd refused"
cp exp.raw exp5.raw

echo "== a restore to a new domain there: raw volumes of a storage pool, uploaded through libvirt"
P=vmbt-ssl-pool-$$
mkdir pool
virsh pool-create-as "$P" dir --target "$PWD/pool" >/dev/null || fail "create pool $P"
trap 'virsh pool-destroy "$P" >/dev/null 2>&1; libvirt_cleanup; rm -rf "$SCRATCH"' EXIT
C=$D-copy
LIBVIRT_DOMAINS+=("$C")
new_domain() {  # new_domain OUT ARGS...: restore point 5 to domain C on the remote libvirt
  local out=$1
  shift
  "$VMBACKUP" restore "$(json_field b5.json "j['id']")" "${SSL[@]}" --to-vm --name "$C" "$@" \
    > "$out" 2>&1
}
expect_refused() {  # expect_refused OUT TEXT: the restore failed saying TEXT, and made nothing
  grep -F "$2" "$1" >/dev/null || fail "the refusal does not say '$2': $(cat "$1")"
  ! virsh dominfo "$C" >/dev/null 2>&1 || fail "a refused restore defined $C"
  [ -z "$(ls -A pool)" ] || fail "a refused restore left volumes: $(ls -A pool)"
}
new_domain q.out --disk-format qcow2 && fail "a qcow2 disk was made on the remote libvirt"
expect_refused q.out "raw volumes"
new_domain nopool.out --disk-pool "nosuch-$$" && fail "a restore used a pool that is not there"
expect_refused nopool.out "nosuch-$$"
new_domain new.json --disk-pool "$P" --json --verify || fail "restore to a new domain there: $(cat new.json)"
vol=$PWD/pool/$C-vda.img
virsh dumpxml "$C" | grep -F "$vol" >/dev/null || fail "the new domain's disk: $(virsh dumpxml "$C")"
virsh vol-info --pool "$P" "$C-vda.img" >/dev/null || fail "the disk is no volume of $P"
cmp -s "$vol" exp5.raw || fail "the new domain's disk differs from point 5"
[ "$(stat -c %b "$vol")" -lt 8192 ] || fail "the volume was not written sparse: $(du -h "$vol")"
[ "$(json_field new.json "j['disks'][0]['transport']")" = nbdssl ] ||
  fail "the upload does not say nbdssl: $(cat new.json)"
[ "$(json_field new.json "j['disks'][0]['verified']")" = True ] || fail "not verified: $(cat new.json)"
[ -z "$(virsh metadata "$C" https://vmbackup.dev/libvirt/1 2>/dev/null)" ] ||
  fail "the new domain is still blocked: $(virsh metadata "$C" https://vmbackup.dev/libvirt/1)"
ls -d "${TMPDIR:-/tmp}"/vmbackup-volume-* 2>/dev/null && fail "a staging folder is left"
new_domain again.out --disk-pool "$P" && fail "a second restore replaced the domain"
grep -F "exists" again.out >/dev/null || fail "no 'exists': $(cat again.out)"
# A domain an interrupted restore left (it says so in its power-on block) is replaced, with its
# volumes.
virsh metadata "$C" https://vmbackup.dev/libvirt/1 --key vmbackup --config \
  --set "<powerOnBlock reason='vmbackup: incomplete restore of point x'/>" >/dev/null ||
  fail "set the block"
qemu-io -f raw -c "write -P 0x77 0 64k" "$vol" >/dev/null
new_domain replaced.json --disk-pool "$P" --json || fail "replace: $(cat replaced.json)"
grep -F "replaced" replaced.json >/dev/null || fail "the report does not say it replaced: $(cat replaced.json)"
cmp -s "$vol" exp5.raw || fail "the replaced domain's disk differs from point 5"
virsh destroy "$D" >/dev/null
if "$VMBACKUP" backup "${SSL[@]}" --vm "$D" --no-progress > off.out 2>&1; then
  fail "a remote domain that is off was backed up"
fi
grep -F "is off" off.out >/dev/null || fail "the refusal does not say why: $(cat off.out)"
virsh start "$D" >/dev/null || fail "start $D again"

echo "== nbd: a unix socket again"
"$VMBACKUP" backup --source qemu:///system --transport nbd --vm "$D" --no-progress --json \
  --allow-crash-consistent > b4.json 2> b4.err || fail "backup over nbd: $(cat b4.err)"
[ "$(json_field b4.json "j['disks'][0]['transport']")" = nbd ] || fail "backup 4 is not nbd"
no_job_left "after the nbd backup"
echo "libvirt nbdssl: ok"
