#!/usr/bin/env bash
# VMDK files other products wrote (VMware vdiskmanager, ESXi, ovftool streams, VirtualBox, Xen
# Orchestra, Bochs, VMDK-stream-converter) and damaged ones from other projects' test suites:
# the folder ../shared/testdata/vmdk-wild and what its MANIFEST.md says reading each must give.
# Readable disks: `vmdk cat` equals qemu-img's reading (through a sparse file, and through a pipe
# for the small ones), `vmdk map` agrees with qemu-img map, and the documented checksum or
# pattern holds. Damaged ones: refused with a message (exit 1 or 2), no signal, within 60 s and
# 2 GiB of address space.
source "$(dirname "$0")/functions.sh"
requires python3 qemu-img xz bzip2 gzip sha1sum
V=$VMBACKUP
WILD=${VMDK_WILD:-$SHARED/testdata/vmdk-wild}
[ -f "$WILD/MANIFEST.md" ] || fail "no test data at $WILD"

unpack() {  # CASE: a fresh copy of the case's folder, decompressed, in $SCRATCH/CASE
  rm -rf "$1" && mkdir "$1"
  local f
  for f in "$WILD/$1"/*; do
    case $f in
      *.xz) xz -dc "$f" > "$1/$(basename "${f%.xz}")" ;;
      *.bz2) bzip2 -dc "$f" > "$1/$(basename "${f%.bz2}")" ;;
      *.gz) gzip -dc "$f" > "$1/$(basename "${f%.gz}")" ;;
      *) cp "$f" "$1/" ;;
    esac
  done
}
# The refusal rules: 2 GiB of address space, 60 s (AddressSanitizer reserves terabytes of
# address space for its shadow memory, so a sanitized build gets the time limit only).
limited() {
  if [ -n "${ASAN_OPTIONS:-}" ]; then timeout 60 "$@"; else (ulimit -v 2097152; timeout 60 "$@"); fi
}
sha1_ok() {  # FILE PREFIX SUFFIX
  local sum
  sum=$(sha1sum < "$1" | cut -c1-40)
  [[ $sum == "$2"* && $sum == *"$3" ]] || fail "$1: sha1 $sum, the manifest says $2…$3"
}
# read_equal CASE FILE [QEMU-FILE]: cat = qemu-img (sparse file and pipe), map agrees.
read_equal() {
  local c=$1 f=$2 q=${3:-$2} size
  limited "$V" vmdk info "$c/$f" >/dev/null || fail "$c: vmdk info"
  limited "$V" vmdk cat "$c/$f" > "$c.ours" || fail "$c: vmdk cat"
  qemu-img convert -O raw "$c/$q" "$c.theirs" || fail "$c: qemu-img convert"
  [ "$(stat -c %s "$c.ours")" = "$(stat -c %s "$c.theirs")" ] || fail "$c: the wrong size"
  qemu-img compare -q -f raw -F raw "$c.ours" "$c.theirs" || fail "$c: differs from qemu-img"
  size=$(stat -c %s "$c.ours")
  if [ "$size" -le $((64 << 20)) ]; then
    [ "$(limited "$V" vmdk cat "$c/$f" | sha1sum)" = "$(sha1sum < "$c.theirs")" ] \
      || fail "$c: vmdk cat through a pipe differs"
  fi
  qemu-img map --output=json "$c/$q" > "$c.theirs.json"
  "$V" vmdk map --json "$c/$f" > "$c.ours.json" || fail "$c: vmdk map"
  python3 "$E2E_DIR/map_compare.py" "$c.ours.json" "$c.theirs.json" || fail "$c: maps differ"
}
refused() {  # CASE FILE
  local rc=0 cmd
  for cmd in info map cat; do
    rc=0
    limited "$V" vmdk $cmd "$1/$2" >/dev/null 2>"$1.err" || rc=$?
    if [ "$cmd" = cat ]; then
      [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "$1: vmdk cat exited $rc, not a clean refusal: $(cat "$1.err")"
      [ -s "$1.err" ] || fail "$1: refused without a message"
    else
      [ "$rc" -le 2 ] || fail "$1: vmdk $cmd exited $rc (a signal or the timeout)"
    fi
  done
}
flat_from_sparse() {  # CASE NAME: the 10 MiB flat extent, from the vdiskmanager sparse disk
  unpack vmdkrs-monolithicSparse
  "$V" vmdk cat vmdkrs-monolithicSparse/monolithicSparse.vmdk > "$1/$2"
  sha1_ok "$1/$2" dd2fade4 8989
}
DD=(dd2fade4 8989)
XO=(e8962819 d631)

# A. Real products, disks with data.
unpack qemu-iotest-version3 && read_equal qemu-iotest-version3 iotest-version3.vmdk
python3 - qemu-iotest-version3.ours <<'PY' || fail "qemu-iotest-version3: the documented pattern"
import sys
with open(sys.argv[1], "rb") as f:
    for i in range(100):
        f.seek(i * 655360 + i * 512)
        assert f.read(512) == str(i % 10).encode() * 512, i
PY
unpack dissect-sesparse && read_equal dissect-sesparse sesparse.vmdk qemu-wrapper.desc
cmp -s <(head -c 16M dissect-sesparse.ours) <(head -c 16M /dev/zero | tr '\0' 'a') \
  || fail "dissect-sesparse: the first 16 MiB are not 'a'"
for c in vmdkrs-monolithicSparse:monolithicSparse.vmdk vmdkrs-streamOptimized:streamOptimized.vmdk \
         vmdkrs-twoGbMaxExtentSparse:twoGbMaxExtentSparse.vmdk; do
  unpack "${c%%:*}" && read_equal "${c%%:*}" "${c#*:}" && sha1_ok "${c%%:*}.ours" "${DD[@]}"
done
unpack vmdkrs-monolithicFlat && flat_from_sparse vmdkrs-monolithicFlat monolithicFlat-flat.vmdk
read_equal vmdkrs-monolithicFlat monolithicFlat.vmdk && sha1_ok vmdkrs-monolithicFlat.ours "${DD[@]}"
unpack vmdkrs-twoGbMaxExtentFlat && flat_from_sparse vmdkrs-twoGbMaxExtentFlat twoGbMaxExtentFlat-f001.vmdk
read_equal vmdkrs-twoGbMaxExtentFlat twoGbMaxExtentFlat.vmdk && sha1_ok vmdkrs-twoGbMaxExtentFlat.ours "${DD[@]}"
# qemu-img refuses this one ("Invalid extent line"): the checksum decides.
unpack vmdkrs-vdiskmanager-vmfs && flat_from_sparse vmdkrs-vdiskmanager-vmfs 4-flat.vmdk
"$V" vmdk cat vmdkrs-vdiskmanager-vmfs/4.vmdk > vmfs4.raw || fail "vmdkrs-vdiskmanager-vmfs: vmdk cat"
sha1_ok vmfs4.raw "${DD[@]}"
unpack vmdkrs-vmfs-thick && read_equal vmdkrs-vmfs-thick vmfs_thick.vmdk && sha1_ok vmdkrs-vmfs-thick.ours 17eaf058 87d1
unpack vmdkrs-streamWithMarkers && read_equal vmdkrs-streamWithMarkers streamOptimizedWithMarkers.vmdk
sha1_ok vmdkrs-streamWithMarkers.ours b6fd01dd f69d
unpack vmdkstream-pattern && read_equal vmdkstream-pattern vmdkstream-pattern.vmdk && sha1_ok vmdkstream-pattern.ours 603d4dc2 de7e
unpack bochs-vmware4 && read_equal bochs-vmware4 bx-vmware4.img && sha1_ok bochs-vmware4.ours cc0412ee 3411
for c in xo-export xo-export-shortcid xo-2022-shortcid; do
  unpack $c && read_equal $c xo-export.vmdk && sha1_ok $c.ours "${XO[@]}"
done
grep -aq '^CID=[0-9]\{9,\}' xo-export/xo-export.vmdk || fail "xo-export no longer has a long decimal CID"
unpack plaso-image && read_equal plaso-image image.vmdk

# B. Real products, empty disks.
for c in cot-ovftool-2014:input.vmdk cot-input:input.vmdk cot-blank:blank.vmdk \
         cot-vbox-ubuntu:ubuntu.2.0-disk1.vmdk xo-vbox-test:test.vmdk; do
  unpack "${c%%:*}" && read_equal "${c%%:*}" "${c#*:}"
done
unpack virtmanager-esx4-thin && truncate -s 6G virtmanager-esx4-thin/ESX4.0-rhel4u8-32b-flat.vmdk
read_equal virtmanager-esx4-thin test-vmdk-desc.vmdk
rm -f ./*.ours ./*.theirs

# C. Damaged, fuzzed or incomplete: refused cleanly.
for c in qemu-afl9:afl9.vmdk govmomi-ttylinux-truncated:ttylinux-pc_i486-16.1-disk1.vmdk \
         gvp-vmdk-invalid:vmdk-invalid.img virtmanager-zero-placeholder:CentOS-6.4-i386-Gnome-disk1.vmdk \
         qemu059-invalid-granularity:invalid-granularity.vmdk qemu059-l2-too-big:l2-too-big.vmdk \
         qemu059-l1-too-big:l1-too-big.vmdk qemu059-truncated-sparse:truncated-sparse.vmdk \
         qemu059-malformed-vmfs-extent:malformed-vmfs-extent.vmdk ms3-win-descriptor:ms3-win.vmdk \
         libvmdk-descriptor:test.vmdk; do
  unpack "${c%%:*}" && refused "${c%%:*}" "${c#*:}"
done
unpack vmdkrs-vmfs-thick-snapshot && cp vmdkrs-vmfs-thick/* vmdkrs-vmfs-thick-snapshot/
refused vmdkrs-vmfs-thick-snapshot vmfs_thick-000001.vmdk

# D. qemu-img refuses, vmbackup may read: neither may crash; what is read must be right.
unpack qemu059-malformed-vmfs-extent && truncate -s 6G qemu059-malformed-vmfs-extent/dummy.vmdk
rc=0
limited "$V" vmdk cat qemu059-malformed-vmfs-extent/malformed-vmfs-extent.vmdk > /dev/null 2>&1 || rc=$?
[ "$rc" -le 2 ] || fail "qemu059-vmfs-extent-offset: exit $rc"
echo "recorded: qemu059-vmfs-extent-offset exits $rc" >&2
unpack libvmdk-descriptor && qemu-img create -q -f vmdk libvmdk-descriptor/test1.vmdk 8G
rc=0
limited "$V" vmdk cat libvmdk-descriptor/test.vmdk > lv.ours 2>/dev/null || rc=$?
if [ "$rc" = 0 ]; then
  qemu-img convert -O raw libvmdk-descriptor/test1.vmdk lv.theirs
  qemu-img compare -q -f raw -F raw lv.ours lv.theirs || fail "libvmdk-descriptor-with-extent differs"
else
  [ "$rc" -le 2 ] || fail "libvmdk-descriptor-with-extent: exit $rc"
fi
echo "recorded: libvmdk-descriptor-with-extent exits $rc" >&2
echo "ok: vmdk files from the wild"
