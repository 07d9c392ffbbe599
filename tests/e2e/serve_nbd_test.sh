#!/usr/bin/env bash
# `vmbackup serve`: every point's disk over NBD equals its restore; the hole map; eight readers
# at once; gc cannot remove what a serve reads; writes through --writable-overlay and --cow
# never reach the repository; an encrypted repository's passphrase stays off command lines;
# TLS; a killed serve leaves no lock, process or folder that the next one does not clean.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io nbdkit nbdinfo nbdcopy qemu-storage-daemon openssl python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
SRC=vmhost://$SCRATCH/ds
# Serves started in the background stop with the test, also when it fails.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT

"$H" init >/dev/null
"$H" vm create web --disk 48M --disk 8M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 5M /dev/urandom > rand5m
"$H" disk write web 0 --offset 1M --from rand5m >/dev/null
"$H" disk write web 0 --offset 30M --pattern 0x41 --length 3M >/dev/null
"$H" disk write web 1 --offset 2M --from rand5m >/dev/null
"$V" init >/dev/null
"$V" backup --source "$SRC" --vm web --json > b1.json || fail "full backup"
P1=$(json_field b1.json 'j["id"]')
"$H" disk write web 0 --offset 12M --pattern 0x42 --length 1M >/dev/null
"$V" backup --source "$SRC" --vm web --json > b2.json || fail "incremental backup"
P2=$(json_field b2.json 'j["id"]')

# 1. Every point and disk: nbdcopy of the export equals restore --to-file; the map's holes
#    read as zeros and every data run holds data.
for p in "$P1" "$P2"; do
  for d in 2000 2001; do
    "$V" restore "$p" --disk $d --to-file "r-$d.raw" >/dev/null || fail "restore $p $d"
    "$V" serve "$p" --disk $d --socket "$SCRATCH/s.sock" \
      --run 'nbdcopy "$uri" served.raw && nbdinfo --map --json "$uri" > map.json' >/dev/null ||
      fail "serve $p disk $d"
    cmp -s "r-$d.raw" served.raw || fail "point $p disk $d: the export differs from the restore"
    python3 - map.json "r-$d.raw" <<'PY' || fail "point $p disk $d: the map is wrong"
import json, sys
m, data = json.load(open(sys.argv[1])), open(sys.argv[2], "rb").read()
assert sum(e["length"] for e in m) == len(data)
holes = [e for e in m if e["type"] & 1]
assert holes, "no holes reported"
for e in m:
    part = data[e["offset"]:e["offset"] + e["length"]]
    if e["type"] & 1:
        assert part == bytes(len(part)), ("a hole holds data", e)
    else:  # chunk-sized runs of data: each 64 KiB holds something
        for o in range(0, len(part), 65536):
            assert part[o:o + 65536] != bytes(min(65536, len(part) - o)), ("zeros called data", e, o)
PY
    rm -f served.raw map.json "r-$d.raw"
  done
done

# 2. Eight readers at once, each over its own connection.
"$V" restore "$P2" --to-file r2.raw >/dev/null
"$V" serve "$P2" --socket "$SCRATCH/s.sock" --cache-size 4 --run '
  for i in 1 2 3 4 5 6 7 8; do nbdcopy --connections=1 "$uri" par$i.raw & done; wait' >/dev/null ||
  fail "parallel readers"
for i in 1 2 3 4 5 6 7 8; do cmp -s r2.raw par$i.raw || fail "reader $i got other bytes"; done
rm -f par*.raw

# 3. gc and forget while serving: refused (the serve's lock names itself); the served point
#    still reads whole; after the serve, both run.
"$V" serve "$P1" --socket "$SCRATCH/s.sock" --info-file info.json > serve.out 2> serve.err &
SERVE=$!
for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
[ -s info.json ] || fail "serve did not start: $(cat serve.err)"
expect_failure 3 "shared lock of serve" -- "$V" gc --grace 0s
expect_failure 3 "shared lock of serve" -- "$V" forget "$P1"
"$V" restore "$P2" --to-file - > /dev/null || fail "restore of another point while serving"
nbdcopy "$(json_field info.json 'j["uri"]')" during-gc.raw || fail "read while gc was refused"
kill $SERVE
wait $SERVE || fail "serve did not stop cleanly on SIGTERM: $(cat serve.err)"
[ ! -e "$SCRATCH/s.sock" ] || fail "the socket stayed after the serve stopped"
[ -z "$(ls repo/locks)" ] || fail "a lock stayed after the serve stopped"
python3 - during-gc.raw <<'PY' || fail "the point did not read whole while gc was refused"
import sys
d = open(sys.argv[1], "rb").read()
assert d[30 << 20:33 << 20] == b"\x41" * (3 << 20) and d[12 << 20:13 << 20] == bytes(1 << 20)
PY
"$V" forget "$P1" >/dev/null || fail "forget after the serve"
"$V" gc --grace 0s >/dev/null || fail "gc after the serve"
expect_failure 1 "" -- "$V" serve "$P1" --socket "$SCRATCH/s.sock" --run true

# 4. --writable-overlay: writes land in the qcow2 file, kept across serves; the repository does
#    not change; a qcow2 made for something else is refused.
"$V" serve "$P2" --socket "$SCRATCH/o.sock" --writable-overlay "$SCRATCH/ovl.qcow2" \
  --run 'qemu-io -f raw -c "write -P 0x77 64k 128k" "$uri" >/dev/null' >/dev/null || fail "overlay write"
"$V" serve "$P2" --socket "$SCRATCH/o.sock" --writable-overlay "$SCRATCH/ovl.qcow2" \
  --run 'nbdcopy "$uri" ovl.raw' >/dev/null || fail "overlay reuse"
python3 - ovl.raw r2.raw <<'PY' || fail "the overlay did not keep the writes, or lost the point"
import sys
o, r = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
assert o[65536:196608] == b"\x77" * 131072
assert o[:65536] == r[:65536] and o[196608:] == r[196608:]
PY
"$V" serve "$P2" --socket "$SCRATCH/s.sock" --run 'nbdcopy "$uri" after.raw' >/dev/null
cmp -s after.raw r2.raw || fail "an overlay write reached the repository"
qemu-img create -q -f qcow2 other.qcow2 48M
expect_failure 2 "not an overlay of this disk" -- \
  "$V" serve "$P2" --socket "$SCRATCH/o.sock" --writable-overlay other.qcow2 --run true

# 5. Read-only by default; --cow takes writes for the session only.
"$V" serve "$P2" --socket "$SCRATCH/s.sock" \
  --run 'qemu-io -f raw -c "write -P 0x66 0 64k" "$uri"' > ro.txt 2>&1 && fail "a read-only export took a write"
"$V" serve "$P2" --socket "$SCRATCH/s.sock" --cow \
  --run 'qemu-io -f raw -c "write -P 0x66 0 64k" -c "read -P 0x66 0 64k" "$uri"' > cow.txt 2>&1 ||
  fail "--cow: $(cat cow.txt)"
"$V" serve "$P2" --socket "$SCRATCH/s.sock" --run 'nbdcopy "$uri" after.raw' >/dev/null
cmp -s after.raw r2.raw || fail "a --cow write outlived its session"

# 6. Bad requests: a missing disk, TCP to other machines without TLS, both write modes.
expect_failure 1 "has no disk 2002 (its disks: 2000, 2001)" -- \
  "$V" serve "$P2" --disk 2002 --socket "$SCRATCH/s.sock"
expect_failure 2 "reaches other machines" -- "$V" serve "$P2" --listen 0.0.0.0:10809
expect_failure 2 "give one" -- "$V" serve "$P2" --socket s --cow --writable-overlay x.qcow2

# 7. TLS on TCP: the right CA reads, plain NBD is refused.
make_ca "$SCRATCH/tls"
port=$((20000 + RANDOM % 20000))
"$V" serve "$P2" --listen "127.0.0.1:$port" --tls "$SCRATCH/tls" --run "
  nbdcopy 'nbds://localhost:$port/?tls-certificates=$SCRATCH/tls' tls.raw;
  nbdinfo 'nbd://localhost:$port/' > plain.txt 2>&1; true" >/dev/null || fail "serve over TLS"
cmp -s tls.raw r2.raw || fail "the TLS export differs"
grep -qE "requires TLS|Operation not supported" plain.txt || fail "plain NBD to a TLS export: $(cat plain.txt)"

# 8. An encrypted repository: the passphrase reaches nbdkit, but never its command line.
export VMBACKUP_PASSPHRASE=serve-secret-passphrase
"$V" init --repo erepo --encrypt >/dev/null
"$V" backup --repo erepo --source "$SRC" --vm web --json > e.json || fail "encrypted backup"
"$V" restore --repo erepo latest --to-file e.raw >/dev/null
"$V" serve --repo erepo latest --socket "$SCRATCH/e.sock" --run '
  cat /proc/$(pgrep -n nbdkit)/cmdline | tr "\0" " " > cmdline.txt; nbdcopy "$uri" eserved.raw' \
  >/dev/null || fail "serve of an encrypted point"
cmp -s e.raw eserved.raw || fail "the encrypted point's export differs"
grep -q "repo=" cmdline.txt || fail "did not catch nbdkit's command line: $(cat cmdline.txt)"
grep -q "$VMBACKUP_PASSPHRASE" cmdline.txt && fail "the passphrase is on nbdkit's command line"
unset VMBACKUP_PASSPHRASE
expect_failure 11 "" -- "$V" serve --repo erepo latest --socket "$SCRATCH/e.sock" --run true

# 9. A serve killed with SIGKILL: its nbdkit ends, its lock goes, the next serve removes the
#    folder it left.
rm -f info.json
"$V" serve "$P2" --socket "$SCRATCH/k.sock" --info-file info.json > /dev/null 2>&1 &
KILLED=$!
for _ in $(seq 100); do [ -s info.json ] && break; sleep 0.1; done
[ -s info.json ] || fail "serve did not start"
left=$(ls -d /tmp/vmbackup-serve-*-"$KILLED"-* 2>/dev/null)
[ -n "$left" ] || fail "no private folder of the serve was found"
kill -9 $KILLED
wait $KILLED 2>/dev/null || true
for _ in $(seq 50); do [ -z "$(ls repo/locks)" ] && break; sleep 0.1; done
[ -z "$(ls repo/locks)" ] || fail "the killed serve's nbdkit kept its lock"
"$V" serve "$P2" --socket "$SCRATCH/k.sock" --run true >/dev/null || fail "serve after a killed one"
[ ! -e "$left" ] || fail "the killed serve's folder stayed: $left"
echo PASS
