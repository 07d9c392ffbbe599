# Shared helpers of the end-to-end tests. Source it first; it makes a scratch folder, enters
# it, and removes it on exit.
set -euo pipefail

: "${VMBACKUP:?set VMBACKUP to the vmbackup binary}"
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The team's shared folder (tools, test data) sits beside the project's checkout; a clone made
# elsewhere (CI clones the checkout) finds it beside the checkout it was cloned from.
find_shared() {
  local root origin c
  root=$(cd "$E2E_DIR/../.." && pwd)
  origin=$(git -C "$root" config remote.origin.url 2>/dev/null || true)
  for c in "$root/../shared" "${origin:+$origin/../shared}"; do
    [ -n "$c" ] && [ -d "$c/testdata" ] && { (cd "$c" && pwd); return; }
  done
  echo "$root/../shared"
}
SHARED=${SHARED:-$(find_shared)}
SHARED_TOOLS=${SHARED_TOOLS:-$SHARED/tools}

# requires CMD...: skip (exit 77) when a peer is missing, or fail when VMBACKUP_REQUIRE_ALL=1
# (CI installs every peer, so nothing may skip there).
requires() {
  local c
  for c in "$@"; do
    if ! command -v "$c" >/dev/null 2>&1; then
      if [ "${VMBACKUP_REQUIRE_ALL:-0}" = 1 ]; then
        echo "FAIL: $c is not installed (VMBACKUP_REQUIRE_ALL=1)" >&2
        exit 1
      fi
      echo "SKIP: $c is not installed" >&2
      exit 77
    fi
  done
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect_failure WANT_EXIT FRAGMENT -- COMMAND...: the command exits WANT_EXIT and its stdout or
# stderr (kept in out.txt and err.txt) holds FRAGMENT.
expect_failure() {
  local want=$1 fragment=$2 rc=0
  shift 3
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$fragment" out.txt err.txt || fail "'$*': output lacks '$fragment': $(cat out.txt err.txt)"
}

SCRATCH=$(mktemp -d /tmp/vmbackup-e2e-XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
cd "$SCRATCH"
# The catalog cache of the test's repositories stays in its scratch folder.
export VMBACKUP_CACHE_DIR=$SCRATCH/.cache

# check_cat FILE: `vmbackup vmdk cat` equals `qemu-img convert -O raw`.
check_cat() {
  local f=$1
  "$VMBACKUP" vmdk cat "$f" > ours.raw || fail "vmbackup vmdk cat $f"
  qemu-img convert -O raw "$f" theirs.raw || fail "qemu-img convert $f"
  # qemu-img compare skips holes in both files (cmp would read gigabytes of zeros).
  [ "$(stat -c %s ours.raw)" = "$(stat -c %s theirs.raw)" ] || fail "$f: vmdk cat has the wrong size"
  qemu-img compare -q -f raw -F raw ours.raw theirs.raw || fail "$f: vmdk cat differs from qemu-img convert"
  rm -f ours.raw theirs.raw
}

# check_map FILE: `vmbackup vmdk map` and `qemu-img map` agree on what is allocated, and on
# which layer (depth) holds it.
check_map() {
  local f=$1
  qemu-img map --output=json "$f" > theirs.json || fail "qemu-img map $f"
  "$VMBACKUP" vmdk map --json "$f" > ours.json || fail "vmbackup vmdk map $f"
  python3 "$E2E_DIR/map_compare.py" ours.json theirs.json || fail "$f: maps differ"
  rm -f ours.json theirs.json
}

# check_qemu FILE RAW: our file passes qemu-img check and has RAW's content.
check_qemu() {
  local f=$1 raw=$2
  qemu-img check "$f" >/dev/null || fail "qemu-img check $f"
  qemu-img compare -f raw "$raw" "$f" >/dev/null || fail "qemu-img compare $raw $f"
}

# model_write RAW OFFSET LENGTH BYTE: the same write applied to a raw model file.
model_write() {
  python3 - "$@" <<'PY'
import sys
path, off, length, byte = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(bytes([byte]) * length)
PY
}

# The guest that keeps writing while backups run: guest_writer_script > writer.sh makes a
# qemu-io command (the NBD URI follows it) that writes blocks 1..160 in sequence, block k at
# k*256K filled with byte k, 15 ms apart. check_guest_points RAW...: each restored point holds
# exactly the blocks written before its snapshot (a prefix 1..m, none torn), m never falls from
# one point to the next, and the last holds all 160.
guest_writer_script() {
  local cmds=() k
  for k in $(seq 1 160); do
    cmds+=(-c "write -P $k $((k * 262144)) 64k" -c "sleep 15")
  done
  printf '%q ' qemu-io -f raw "${cmds[@]}"
}
check_guest_points() {
  python3 - "$@" <<'PY' || fail "a point does not match its snapshot"
import sys
prev = 0
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    present = []
    for k in range(1, 161):
        block = data[k * 262144 : k * 262144 + 65536]
        if block == bytes(65536):
            continue
        assert block == bytes([k]) * 65536, f"{path}: block {k} is torn or wrong"
        present.append(k)
    m = len(present)
    assert present == list(range(1, m + 1)), f"{path}: blocks {present[:5]}... are not a prefix"
    assert m >= prev, f"{path} has fewer blocks ({m}) than the point before ({prev})"
    prev = m
    print(f"{path}: blocks 1..{m}")
assert prev == 160, "the last point lacks blocks"
PY
}

# start_vmhost_serve PASSWORD_FILE [ARGS...]: `vmhost serve` on a free port (stdout in
# serve.out, stderr in serve.log), stopped when the test ends; sets SERVER (its pid), PORT,
# SHA1 and SHA256 (the thumbprints it printed).
start_vmhost_serve() {
  local pw=$1
  shift
  rm -f info.json
  "${VMHOST:-$(dirname "$VMBACKUP")/vmhost}" serve --password-file "$pw" --info-file info.json "$@" \
    > serve.out 2> serve.log &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
  for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
  [ -s info.json ] || fail "vmhost serve did not start: $(cat serve.log)"
  read -r PORT SHA1 SHA256 < <(python3 -c "import json; j=json.load(open('info.json')); print(j['port'], j['sha1'], j['sha256'])")
}

# libvirt_setup: libvirtd answers on qemu:///system (tests/libvirt/libvirtd-up starts it), QEMU
# can reach the scratch folder, and every domain define_domain made is destroyed and undefined
# when the test ends.
LIBVIRT_DOMAINS=()
libvirt_setup() {
  requires virsh qemu-img qemu-io qemu-nbd qemu-system-x86_64
  "$E2E_DIR/../libvirt/libvirtd-up" || fail "libvirtd did not start"
  export LIBVIRT_DEFAULT_URI=qemu:///system
  chmod 755 "$SCRATCH"
  trap 'libvirt_cleanup; rm -rf "$SCRATCH"' EXIT
}
libvirt_cleanup() {
  local d
  for d in "${LIBVIRT_DOMAINS[@]}"; do
    virsh destroy "$d" >/dev/null 2>&1 || true
    virsh undefine "$d" --checkpoints-metadata --snapshots-metadata >/dev/null 2>&1 || true
  done
}
# define_domain NAME FILE...: a domain with no OS under TCG (it idles in SeaBIOS) whose disks
# vda, vdb, ... are the files (qcow2 or raw, by their contents); not started.
define_domain() {
  local name=$1 f i=0 disks="" fmt
  shift
  for f in "$@"; do
    fmt=$(qemu-img info --output=json "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')
    disks+="<disk type='file' device='disk'><driver name='qemu' type='$fmt'/><source file='$(realpath "$f")'/><target dev='vd$(printf "\\x$(printf %x $((97 + i)))")' bus='virtio'/></disk>"
    i=$((i + 1))
  done
  cat > "$name.xml" <<XML
<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>$disks
    <interface type='user'><model type='virtio'/></interface></devices>
</domain>
XML
  LIBVIRT_DOMAINS+=("$name")
  virsh define "$name.xml" >/dev/null || fail "define $name"
}
# hmp DOMAIN INDEX 'QEMU-IO COMMAND': the running QEMU writes its disk INDEX (0 = vda) itself,
# as a guest would.
hmp() {
  virsh qemu-monitor-command "$1" --hmp \
    "qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend \"$3\"" >/dev/null
}
# json_field FILE EXPR: a value of a JSON report, EXPR in Python over `j` (e.g. j['disks'][0]['mode']).
json_field() {
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

# make_ca DIR: a test CA and a server certificate for localhost/127.0.0.1 signed by it, as
# nbdkit's --tls-certificates wants them (ca-cert.pem, server-cert.pem, server-key.pem).
make_ca() {
  mkdir -p "$1" && (cd "$1" &&
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=test-ca -keyout ca-key.pem -out ca-cert.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null &&
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem -out server.csr 2>/dev/null &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > ext.cnf &&
  openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 30 -extfile ext.cnf -out server-cert.pem 2>/dev/null &&
  chmod 600 ./*key.pem)
}

# rgw_with_proxy: Ceph's radosgw (tests/rgw/rgw-up) in $SCRATCH/rgw, and the tests' fault proxy
# (tests/rgw/s3-fault-proxy) in front of it in $PX: S3_ENDPOINT and the AWS keys are exported,
# PROXY_PORT is the proxy's; `rules JSON` sets its faults, `hits REGEX` counts them; both stop
# when the test ends (with rgw_cleanup, which a test's own EXIT trap calls).
rgw_with_proxy() {
  RGW=$SCRATCH/rgw
  PX=$SCRATCH/proxy
  PROXY_PID=
  trap 'rgw_cleanup; rm -rf "$SCRATCH"' EXIT
  eval "$(bash "$E2E_DIR/../rgw/rgw-up" "$RGW")" || fail "rgw-up"
  export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  python3 "$E2E_DIR/../rgw/s3-fault-proxy" "$S3_ENDPOINT" "$PX" 2>proxy.err &
  PROXY_PID=$!
  for _ in $(seq 100); do [ -s "$PX/port" ] && break; sleep 0.1; done
  [ -s "$PX/port" ] || fail "the fault proxy did not start: $(cat proxy.err)"
  PROXY_PORT=$(cat "$PX/port")
}
rgw_cleanup() {
  [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null
  bash "$E2E_DIR/../rgw/rgw-up" --stop "$RGW"
}
rules() { echo "$1" > "$PX/rules.json"; }
hits() { grep -c -E " ($1)\$" "$PX/log" || true; }
