#!/usr/bin/env bash
# `vmhost serve` answers the vSphere API: pyvmomi (Debian's python3-pyvmomi, an independent
# client) logs in pinning the printed thumbprint, lists VMs through a container view, enables
# CBT, takes a quiesced snapshot through the VM's hooks, pages QueryChangedDiskAreas and
# compares it with what was written, removes, reverts, consolidates, powers off and on, and
# meets the faults. Malformed SOAP gets SOAP faults, and /folder never leaves the datastore.
source "$(dirname "$0")/functions.sh"
requires curl python3 /usr/bin/python3 openssl
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds
"$H" init
"$H" vm create web --disk 16M >/dev/null
"$H" vm create db --disk 8M --disk 4M >/dev/null
echo 'vmhost.cbtMaxAreas = "2"' >> ds/web/web.vmx
printf '#!/bin/sh\necho "$1 $2" >> %s/hooks.log\n' "$SCRATCH" > hook.sh && chmod +x hook.sh
printf 'vmhost.freezeHook = "%s"\nvmhost.thawHook = "%s"\n' "$SCRATCH/hook.sh" "$SCRATCH/hook.sh" >> ds/web/web.vmx

printf 'Pa55 word\n' > pw
expect_failure 2 "password" -- "$H" serve
start_vmhost_serve pw
# The printed thumbprints are the certificate's.
WANT=$(openssl s_client -connect "127.0.0.1:$PORT" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha1 | cut -d= -f2)
[ "$SHA1" = "$WANT" ] || fail "SHA-1 thumbprint $SHA1, openssl says $WANT"
grep -qF "$SHA1" serve.out || fail "the thumbprint was not printed: $(cat serve.out)"
[ "$(stat -c %a ds/.vmhost-tls/key.pem)" = 600 ] || fail "the key is not private"

cat > client.py <<'PY'
import os, ssl, sys, time
from pyVim.connect import SmartConnect, Disconnect
from pyVmomi import vim, vmodl
port, sha1, scratch = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()   # trust comes from the pinned thumbprint
def connect(pwd="Pa55 word", thumb=sha1):
    return SmartConnect(host="127.0.0.1", port=port, user="root", pwd=pwd, sslContext=ctx,
                        thumbprint=thumb.replace(":", ""))
def wait(task):
    states = set()
    while task.info.state in ("queued", "running"):
        states.add(task.info.state); time.sleep(0.02)
    states.add(task.info.state)
    assert states <= {"queued", "running", "success", "error"}, states
    return task.info

# Faults: a wrong password, a wrong thumbprint.
try:
    connect(pwd="wrong"); raise SystemExit("a wrong password was accepted")
except vim.fault.InvalidLogin:
    pass
try:
    connect(thumb="00" * 20); raise SystemExit("a wrong thumbprint was accepted")
except (vim.fault.SSLVerifyFault, ssl.SSLError, Exception) as e:
    assert "thumbprint" in str(e).lower() or isinstance(e, ssl.SSLError), repr(e)

si = connect()
content = si.RetrieveContent()
assert content.about.apiType == "HostAgent", content.about
view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
vms = {vm.name: vm for vm in view.view}
assert set(vms) == {"web", "db"}, vms
view.DestroyView()
web = content.searchIndex.FindByInventoryPath("ha-datacenter/vm/web")
assert web == vms["web"], web
assert content.searchIndex.FindByUuid(None, web.config.uuid, True, False) == web
db = vms["db"]
assert len([d for d in db.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]) == 2

# Change tracking on, then a power-on: the guest (vmhost disk write) writes known areas.
info = wait(web.ReconfigVM_Task(vim.vm.ConfigSpec(changeTrackingEnabled=True)))
assert info.state == "success", info
assert web.config.changeTrackingEnabled is True
assert wait(web.PowerOnVM_Task()).state == "success"
assert web.runtime.powerState == "poweredOn"
info = wait(web.PowerOnVM_Task())
assert info.state == "error" and isinstance(info.error, vim.fault.InvalidPowerState), info.error
t1 = wait(web.CreateSnapshot_Task(name="t1", description="base", memory=False, quiesce=True))
assert t1.state == "success", t1.error
s1 = t1.result
assert isinstance(s1, vim.vm.Snapshot), s1
assert web.snapshot.rootSnapshotList[0].quiesced is True
assert web.snapshot.currentSnapshot == s1
hooks = open(os.path.join(scratch, "hooks.log")).read().split("\n")
assert hooks[:2] == ["freeze web", "thaw web"], hooks
disk = [d for d in web.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)][0]
cid1 = [d for d in s1.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)][0].backing.changeId
assert cid1, "no change id at the first snapshot"
print("KEY", disk.key, "CID", cid1, flush=True)
sys.stdout.flush()
# The test writes between here and the next line of stdin.
sys.stdin.readline()
t2 = wait(web.CreateSnapshot_Task(name="t2", memory=False, quiesce=False))
assert t2.state == "success" and web.snapshot.currentSnapshot == t2.result
assert web.snapshot.rootSnapshotList[0].childSnapshotList[0].quiesced is False
areas, start, pages = [], 0, 0
while start < disk.capacityInBytes:
    r = web.QueryChangedDiskAreas(snapshot=t2.result, deviceKey=disk.key, startOffset=start, changeId=cid1)
    assert r.startOffset == start and r.length > 0, r
    areas += [(a.start, a.length) for a in r.changedArea]
    start = r.startOffset + r.length
    pages += 1
assert pages >= 2, "cbtMaxAreas=2 should page the answer: %d page(s)" % pages
print("AREAS", " ".join("%d:%d" % a for a in areas), flush=True)
# Faults: an unknown change id, an unknown moref, a revert of a running VM, a call without a
# session.
try:
    web.QueryChangedDiskAreas(snapshot=t2.result, deviceKey=disk.key, startOffset=0,
                              changeId="52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1")
    raise SystemExit("a foreign change id was answered")
except vim.fault.FileFault:
    pass
ghost = vim.VirtualMachine("vm-ghost", si._stub)
try:
    ghost.name; raise SystemExit("an unknown moref answered")
except vmodl.fault.ManagedObjectNotFound:
    pass
info = wait(s1.RevertToSnapshot_Task())
assert info.state == "error" and isinstance(info.error, vim.fault.InvalidPowerState), info.error
# pyVim's own WaitForTask (PropertyCollector filters and WaitForUpdates): a success, and a
# failure raised as the task's fault.
from pyVim.task import WaitForTask
try:
    WaitForTask(web.PowerOnVM_Task()); raise SystemExit("powering on a running VM succeeded")
except vim.fault.InvalidPowerState:
    pass
assert WaitForTask(web.PowerOffVM_Task()) == "success"
# WaitForUpdatesEx: the first call gives the whole state, the next nothing (within 0 s).
pc = content.propertyCollector
spec = vmodl.query.PropertyCollector.FilterSpec(
    objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=web)],
    propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.powerState"])])
flt = pc.CreateFilter(spec, True)
first = pc.WaitForUpdatesEx("", vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=0))
obj = first.filterSet[0].objectSet[0]
assert obj.kind == "enter" and obj.changeSet[0].val == "poweredOff", first
assert pc.WaitForUpdatesEx(first.version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=0)) is None
flt.Destroy()
# Revert to t1 (discarding t2's later state), remove t1's child, consolidate.
assert wait(s1.RevertToSnapshot_Task()).state == "success"
assert web.snapshot.currentSnapshot == s1
assert wait(t2.result.RemoveSnapshot_Task(removeChildren=False)).state == "success"
assert wait(web.RemoveAllSnapshots_Task()).state == "success"
assert web.snapshot is None
assert wait(web.ConsolidateVMDisks_Task()).state == "success"
assert web.runtime.consolidationNeeded is False
files = [f.name for f in web.layoutEx.file]
assert "[datastore1] web/web.vmx" in files and "[datastore1] web/web-flat.vmdk" in files, files
# The session ends with Logout; its cookie no longer works.
stub = si._stub
Disconnect(si)
try:
    vim.ServiceInstance("ServiceInstance", stub).content.rootFolder.name
    raise SystemExit("a call without a session was answered")
except vim.fault.NotAuthenticated:
    pass
print("DONE", flush=True)
PY

# The client runs; between its two snapshots the guest writes three areas.
mkfifo go
/usr/bin/python3 client.py "$PORT" "$SHA1" "$SCRATCH" < go > client.out 2> client.err &
CLIENT=$!
exec 3>go
for _ in $(seq 300); do grep -q "^KEY" client.out && break; kill -0 $CLIENT 2>/dev/null || break; sleep 0.1; done
grep -q "^KEY" client.out || fail "pyvmomi: $(cat client.err)"
"$H" disk write web 0 --offset 1M --pattern 0x11 --length 64K >/dev/null
"$H" disk write web 0 --offset 5M --pattern 0x22 --length 128K >/dev/null
"$H" disk write web 0 --offset 9M --pattern 0x33 --length 64K >/dev/null
echo go >&3
exec 3>&-
wait $CLIENT || fail "pyvmomi: $(tail -20 client.err)"
grep -q "^DONE" client.out || fail "pyvmomi did not finish: $(cat client.out client.err)"
AREAS=$(sed -n 's/^AREAS //p' client.out)
[ "$AREAS" = "1048576:65536 5242880:131072 9437184:65536" ] || fail "changed areas: $AREAS"

# Malformed SOAP: a SOAP fault with HTTP 500, never a crash.
soap() { curl -sk -o answer.xml -w '%{http_code}' -H 'Content-Type: text/xml' --data-binary "@$1" "https://127.0.0.1:$PORT/sdk"; }
printf '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><Login' > truncated.xml
printf '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><Frob xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></Frob></soapenv:Body></soapenv:Envelope>' > unknown.xml
printf '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><Login xmlns="urn:vim25"><_this type="SessionManager">&c;</_this></Login></soapenv:Body></soapenv:Envelope>' > entities.xml
head -c 5M /dev/zero | tr '\0' 'a' > big.xml
for f in truncated entities big; do
  [ "$(soap $f.xml)" = 500 ] || fail "$f: not HTTP 500"
  grep -q "InvalidRequest" answer.xml || fail "$f: no InvalidRequest fault: $(head -c 300 answer.xml)"
done
[ "$(soap unknown.xml)" = 500 ] && grep -q "NotAuthenticated" answer.xml || fail "a call without a session was not refused"

# The datastore file service: a session cookie, and nothing outside the datastore.
cat > login.xml <<XML
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><Login xmlns="urn:vim25"><_this type="SessionManager">ha-sessionmgr</_this><userName>root</userName><password>Pa55 word</password></Login></soapenv:Body></soapenv:Envelope>
XML
curl -sk -c jar -o /dev/null --data-binary @login.xml "https://127.0.0.1:$PORT/sdk"
[ "$(soap unknown.xml)" = 500 ] || true
curl -sk -b jar -o answer.xml --data-binary @unknown.xml "https://127.0.0.1:$PORT/sdk"
grep -q "MethodNotFound" answer.xml || fail "an unknown method: $(head -c 300 answer.xml)"
"$H" vm power-on web && "$H" disk write web 0 --offset 5M --pattern 0x22 --length 64K >/dev/null
URL="https://127.0.0.1:$PORT/folder"
Q="dcPath=ha-datacenter&dsName=datastore1"
get() { curl -sk -o got.bin -w '%{http_code}' "$@"; }
[ "$(get "$URL/web/web.vmx?$Q")" = 401 ] || fail "/folder without a session"
[ "$(get -b jar "$URL/web/web.vmx?$Q")" = 200 ] && cmp -s got.bin ds/web/web.vmx || fail "GET web.vmx"
[ "$(get -b jar -r 5242880-5242895 "$URL/web/web-flat.vmdk?$Q")" = 206 ] || fail "a ranged GET"
[ "$(od -An -tx1 got.bin | tr -d ' \n')" = "22222222222222222222222222222222" ] || fail "the range holds other bytes"
[ "$(get -b jar -r 99999999-99999999999 "$URL/web/web-flat.vmdk?$Q")" = 416 ] || fail "a range past the end"
ln -s /etc ds/web/etc
echo secret-outside > outside.txt
ln -s "$SCRATCH/outside.txt" ds/web/out.txt
for p in "web/../../outside.txt" "web/%2e%2e/%2e%2e/outside.txt" "web/etc/passwd" "web/out.txt" \
         ".vmhost-tls/key.pem" "%2Fetc%2Fpasswd"; do
  code=$(get -b jar --path-as-is "$URL/$p?$Q")
  [ "$code" = 403 ] || [ "$code" = 404 ] || fail "GET $p answered $code"
  grep -q "secret-outside\|root:\|PRIVATE" got.bin && fail "GET $p leaked a file"
done
[ "$(get -b jar "$URL/web/web.vmx?dcPath=ha-datacenter&dsName=other")" = 404 ] || fail "another datastore"
printf 'uploaded' > up.txt
[ "$(get -b jar -T up.txt "$URL/newvm/notes.txt?$Q")" = 201 ] || fail "PUT"
[ "$(cat ds/newvm/notes.txt)" = uploaded ] || fail "the PUT did not land"
code=$(get -b jar -T up.txt --path-as-is "$URL/web/../../escaped.txt?$Q")
[ "$code" = 403 ] || [ "$code" = 404 ] || fail "PUT outside answered $code"
[ ! -e "$SCRATCH/escaped.txt" ] || fail "a PUT left the datastore"
code=$(get -b jar -T up.txt "$URL/web/out.txt?$Q")
[ "$(cat outside.txt)" = secret-outside ] || fail "a PUT through a symbolic link wrote outside"

# The server keeps serving while vmhost commands change the datastore, and stops on SIGTERM.
"$H" vm create late --disk 1M >/dev/null
/usr/bin/python3 - "$PORT" "$SHA1" <<'PY' || fail "a VM made while serving is not listed"
import ssl, sys
from pyVim.connect import SmartConnect, Disconnect
si = SmartConnect(host="127.0.0.1", port=int(sys.argv[1]), user="root", pwd="Pa55 word",
                  sslContext=ssl._create_unverified_context(), thumbprint=sys.argv[2].replace(":", ""))
assert si.content.searchIndex.FindByInventoryPath("ha-datacenter/vm/late") is not None
Disconnect(si)
PY
kill -TERM $SERVER
wait $SERVER || fail "vmhost serve did not end cleanly on SIGTERM"
grep -q "Pa55 word" serve.out serve.log && fail "the password was printed"
echo "ok: vmhost serves the vSphere API"
