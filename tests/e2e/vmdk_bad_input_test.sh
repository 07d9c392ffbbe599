#!/usr/bin/env bash
# Bad input through the command line: each case exits non-zero (1 for a failed operation, 2 for
# a bad command line) with a message naming the file and the field; never a crash or a hang.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io python3

# expect_error WANT_EXIT FRAGMENT -- COMMAND...: the command fails with WANT_EXIT and its stderr
# contains FRAGMENT.
expect_error() {
  local want=$1 fragment=$2
  shift 3
  local rc=0
  timeout 60 "$@" >/dev/null 2>err.txt || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$fragment" err.txt || fail "'$*': stderr lacks '$fragment': $(cat err.txt)"
}

V=$VMBACKUP
expect_error 1 "open nope.vmdk: No such file" -- $V vmdk info nope.vmdk
head -c 4096 /dev/urandom > garbage.bin
expect_error 1 "garbage.bin: not a VMDK" -- $V vmdk map garbage.bin

"$V" vmdk create good.vmdk --size 64M
"$V" vmdk write good.vmdk --offset 1M --length 64K --pattern 7
head -c 1000 good.vmdk > truncated.vmdk
expect_error 1 "truncated.vmdk: embedded descriptor (sector 1, 20 sectors) lies past the end of the file" -- $V vmdk cat truncated.vmdk
head -c 300 good.vmdk > tiny.vmdk
expect_error 1 "tiny.vmdk: 300 bytes, too short for a sparse header" -- $V vmdk info tiny.vmdk

# A grain table entry that points past the end of the file.
cp good.vmdk badgt.vmdk
python3 - <<'PY'
import struct
f = open('badgt.vmdk', 'r+b')
hdr = f.read(512)
gd = struct.unpack_from('<Q', hdr, 56)[0]
f.seek(gd * 512); gt0 = struct.unpack('<I', f.read(4))[0]
f.seek(gt0 * 512 + 16 * 4); f.write(struct.pack('<I', 0x7fffffff))
PY
expect_error 1 "badgt.vmdk: grain table 0 entry 16 points at sector 2147483647, past the end" -- $V vmdk cat badgt.vmdk

# Descriptors: non-UTF-8, garbage lines, absurd sizes.
printf 'version=1\ncreateType="vmfs"\nRW 8 VMFS "caf\xe9-flat.vmdk"\n' > latin.vmdk
expect_error 1 "latin.vmdk: line 3: byte" -- $V vmdk info latin.vmdk
printf 'version=1\ncreateType="vmfs"\nRW 99999999999999999 VMFS "x"\n' > huge.vmdk
expect_error 1 "huge.vmdk: line 3: extent size 99999999999999999 sectors is larger than 256 TiB" -- $V vmdk info huge.vmdk
printf 'version=1\ncreateType="vmfs"\nRW 8 VMFS "absent-flat.vmdk"\n' > noflat.vmdk
expect_error 1 "extent 1 (absent-flat.vmdk)" -- $V vmdk info noflat.vmdk
head -c 1024 /dev/zero > short-flat.vmdk
printf 'version=1\ncreateType="vmfs"\nRW 8 VMFS "short-flat.vmdk"\n' > short.vmdk
expect_error 1 "short-flat.vmdk: file is 1024 bytes, shorter than the extent's end at 4096" -- $V vmdk info short.vmdk

# Chains: missing parent, loop, CID mismatch (and the recovery override).
"$V" vmdk create child.vmdk --parent good.vmdk
mv good.vmdk moved.vmdk
expect_error 1 "parent good.vmdk of child.vmdk is missing (parentFileNameHint)" -- $V vmdk info child.vmdk
mv moved.vmdk good.vmdk
"$V" vmdk info child.vmdk >/dev/null
"$V" vmdk write good.vmdk --offset 0 --length 512 --pattern 1   # changes the parent's CID
expect_error 1 "child.vmdk: parentCID" -- $V vmdk cat child.vmdk
grep -q -- "--ignore-cid" err.txt || fail "CID mismatch message does not name --ignore-cid"
"$V" vmdk cat --ignore-cid child.vmdk > /dev/null || fail "--ignore-cid does not open the chain"
head -c 4096 /dev/zero > data.bin
printf 'version=1\nCID=1\nparentCID=1\ncreateType="vmfs"\nparentFileNameHint="b.vmdk"\nRW 8 VMFS "data.bin"\n' > a.vmdk
printf 'version=1\nCID=1\nparentCID=1\ncreateType="vmfs"\nparentFileNameHint="a.vmdk"\nRW 8 VMFS "data.bin"\n' > b.vmdk
expect_error 1 "parent chain loops back to a.vmdk" -- $V vmdk info a.vmdk

# Wrong options.
expect_error 2 "unknown disk type 'qcow2'" -- $V vmdk create x.vmdk --size 1M --type qcow2
expect_error 2 "invalid size '12Q'" -- $V vmdk create x.vmdk --size 12Q
expect_error 2 "capacity larger than 256 TiB" -- $V vmdk create x.vmdk --size 999999T
expect_error 2 "lies past the end of the disk" -- $V vmdk cat good.vmdk --offset 63M --length 2M
expect_error 2 "give exactly one of --from FILE and --pattern BYTE" -- $V vmdk write good.vmdk
expect_error 2 "--pattern must be a byte" -- $V vmdk write good.vmdk --pattern 300 --length 1
expect_error 2 "FILE is required" -- $V vmdk info
[ ! -e x.vmdk ] || fail "a failed create left x.vmdk behind"
echo "ok: bad input"
