#!/usr/bin/env bash
# Every file a VM uses stays inside its datastore. A descriptor whose extent is an absolute path
# or climbs out with "..", a delta whose parentFileNameHint leaves, a symlink out of the
# datastore, a change tracking file elsewhere: each is refused by vmhost, by the backup and by
# an in-place restore, nothing outside is read into the repository or overwritten, and
# `vmhost vm info` names the problem.
source "$(dirname "$0")/functions.sh"
requires python3
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
SRC=vmhost://$SCRATCH/ds

# A file outside the datastore that a hostile descriptor aims at.
head -c 1M /dev/urandom > victim
cp victim victim.orig
needle=$(od -An -tx1 -N32 victim | tr -d ' \n')

"$H" init >/dev/null
"$H" vm create v --disk 1M --cbt >/dev/null
"$H" vm power-on v >/dev/null
"$H" disk write v 0 --offset 0 --length 64K --pattern 0x11 >/dev/null
"$V" init >/dev/null
"$V" backup --source "$SRC" --vm v --json > b.json || fail "backup of the healthy VM"
P=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" b.json)
d=ds/v
cp "$d/v.vmdk" desc.good

refused_everywhere() {  # WHAT: every path refuses, the victim is untouched, info names it
  local what=$1
  "$H" vm info v > info.txt 2>&1 || true
  grep -q "outside" info.txt || fail "$what: vm info does not name the problem: $(cat info.txt)"
  "$H" disk write v 0 --offset 0 --length 64K --pattern 0x66 >/dev/null 2>err.txt \
    && fail "$what: vmhost disk write went through"
  grep -q "outside" err.txt || fail "$what: disk write: $(cat err.txt)"
  "$V" backup --source "$SRC" --vm v >/dev/null 2>err.txt && fail "$what: a backup went through"
  "$H" vm power-off v >/dev/null
  "$V" restore "$P" --in-place --source "$SRC" >/dev/null 2>err.txt \
    && fail "$what: an in-place restore went through"
  "$H" vm power-on v >/dev/null 2>&1 && fail "$what: a VM whose disk leaves the datastore powers on"
  cmp -s victim victim.orig || fail "$what: the file outside the datastore was changed"
  if grep -rqaF "$needle" repo; then fail "$what: data from outside reached the repository"; fi
  # No snapshot may stay behind from the refused jobs.
  n=$("$H" --json snapshot list v 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0)
  [ "$n" = 0 ] || fail "$what: $n snapshots left"
}

# 1. An absolute extent path.
sed -i "s|\"v-flat.vmdk\"|\"$SCRATCH/victim\"|" "$d/v.vmdk"
sed -i "s|^RW [0-9]* VMFS|RW 2048 VMFS|" "$d/v.vmdk"
refused_everywhere "an absolute extent"
cp desc.good "$d/v.vmdk"
"$H" vm power-on v >/dev/null
# 2. An extent that climbs out with "..".
sed -i 's|"v-flat.vmdk"|"../../victim"|; s|^RW [0-9]* VMFS|RW 2048 VMFS|' "$d/v.vmdk"
refused_everywhere "a relative extent"
cp desc.good "$d/v.vmdk"
"$H" vm power-on v >/dev/null
# 3. A symlink in the VM folder that points out of the datastore.
mv "$d/v-flat.vmdk" flat.good
ln -s "$SCRATCH/victim" "$d/v-flat.vmdk"
refused_everywhere "a symlinked extent"
rm "$d/v-flat.vmdk"
mv flat.good "$d/v-flat.vmdk"
"$H" vm power-on v >/dev/null
# 4. A change tracking file outside.
cp victim "$SCRATCH/ctk-outside"
sed -i "s|changeTrackPath=\"v-ctk.vmdk\"|changeTrackPath=\"../../ctk-outside\"|" "$d/v.vmdk"
"$H" vm info v > info.txt 2>&1 || true
grep -q "outside" info.txt || fail "a ctk file outside: vm info: $(cat info.txt)"
"$H" disk write v 0 --offset 0 --length 64K --pattern 0x66 >/dev/null 2>&1 \
  && fail "a ctk file outside: a guest write recorded its change there"
cmp -s ctk-outside victim || fail "the ctk file outside the datastore was written"
cp desc.good "$d/v.vmdk"
# 5. A snapshot delta whose parent is outside.
"$H" snapshot create v s1 >/dev/null
delta=$(ls "$d" | grep -- '-000001.vmdk' | grep -v ctk)
cp "$d/v.vmdk" outside-parent.vmdk
sed -i "s|\"v-flat.vmdk\"|\"$SCRATCH/ds/v/v-flat.vmdk\"|" outside-parent.vmdk
python3 - "$d/$delta" "$SCRATCH/outside-parent.vmdk" <<'PY'
import sys
path, parent = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
at = data.find(b'parentFileNameHint="')
end = data.find(b'"', at + 20)
new = b'parentFileNameHint="' + parent.encode() + b'"'
data[at:end + 1] = new + b" " * max(0, (end + 1 - at) - len(new))
open(path, "wb").write(bytes(data))
PY
"$H" vm info v > info.txt 2>&1 || true
grep -q "outside" info.txt || fail "a parent outside: vm info: $(cat info.txt)"
"$V" backup --source "$SRC" --vm v >/dev/null 2>&1 && fail "a parent outside: a backup went through"
echo "ok: confinement"
