#!/usr/bin/env bash
# Hand-edited garbage in a .vmx or .vmsd, a missing delta, a broken chain, a ctk file of the
# wrong size: clear errors naming the file, and `vmhost vm info` reports what is wrong.
source "$(dirname "$0")/functions.sh"
requires python3
H=(${VMHOST:-$(dirname "$VMBACKUP")/vmhost} --datastore "$SCRATCH/ds")
expect_error() {  # WANT_EXIT FRAGMENT -- COMMAND...
  local want=$1 fragment=$2 rc=0
  shift 3
  timeout 60 "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$fragment" err.txt || fail "'$*': stderr lacks '$fragment': $(cat err.txt)"
}
"${H[@]}" init
"${H[@]}" vm create v --disk 8M --cbt
"${H[@]}" vm power-on v
"${H[@]}" disk write v 0 --length 64K --pattern 1
"${H[@]}" snapshot create v s1
"${H[@]}" disk write v 0 --offset 1M --length 64K --pattern 2
d="$SCRATCH/ds/v"

cp "$d/v.vmx" vmx.good
echo 'this line is garbage' >> "$d/v.vmx"
expect_error 1 "v.vmx: line" -- "${H[@]}" vm info v
cp vmx.good "$d/v.vmx"

cp "$d/v.vmsd" vmsd.good
sed -i 's/^snapshot0.parent.*//; s/^snapshot0.uid = .*/snapshot0.uid = "banana"/' "$d/v.vmsd"
expect_error 1 "v.vmsd: snapshot0.uid = 'banana' is not a number" -- "${H[@]}" snapshot list v
cp vmsd.good "$d/v.vmsd"
printf 'snapshot9.uid = "7"\nsnapshot9.parent = "99"\nsnapshot9.numDisks = "0"\n' >> "$d/v.vmsd"
expect_error 1 "names a missing parent 99" -- "${H[@]}" vm info v
cp vmsd.good "$d/v.vmsd"

# A ctk file of the wrong size: info reports it, a CBT query fails with a clear error.
ctk="$d/v-000001-ctk.vmdk"
cp "$ctk" ctk.good
truncate -s 1000 "$ctk"
"${H[@]}" vm info v > info.txt || fail "vm info fails instead of reporting"
grep -q "PROBLEM: .*v-000001-ctk.vmdk: ctk file is 1000 bytes" info.txt || fail "info: $(cat info.txt)"
"${H[@]}" vm power-off v
expect_error 1 "ctk file is 1000 bytes" -- "${H[@]}" cbt changes v --change-id "$("${H[@]}" cbt change-id v --snapshot s1)"
cp ctk.good "$ctk"
"${H[@]}" vm power-on v

# A missing delta: info reports it, reads fail naming the file.
mv "$d/v-000001.vmdk" delta.saved
"${H[@]}" vm info v > info.txt || fail "vm info fails instead of reporting"
grep -q "PROBLEM: disk 0 (v-000001.vmdk): open .*v-000001.vmdk: No such file" info.txt || fail "info: $(cat info.txt)"
expect_error 1 "v-000001.vmdk" -- "${H[@]}" disk read v 0
mv delta.saved "$d/v-000001.vmdk"

# A broken chain: the base changed under the delta (CID mismatch).
sed -i 's/^CID=.*/CID=0badc0de/' "$d/v.vmdk"
"${H[@]}" vm info v > info.txt || fail "vm info fails instead of reporting"
grep -q "PROBLEM: .*parentCID .* does not match CID 0badc0de" info.txt || fail "info: $(cat info.txt)"
expect_error 1 "does not match CID 0badc0de" -- "${H[@]}" disk write v 0 --length 1 --pattern 1

# Wrong requests.
expect_error 2 "VM name" -- "${H[@]}" vm create ../evil --disk 1M
expect_error 1 "already exists" -- "${H[@]}" vm create v --disk 1M
expect_error 1 "no VM 'nope'" -- "${H[@]}" vm info nope
expect_error 1 "no snapshot 'zzz'" -- "${H[@]}" snapshot revert v zzz
expect_error 2 "has no disk 5" -- "${H[@]}" disk read v 5
expect_error 2 "invalid size" -- "${H[@]}" vm create w --disk 12Q
expect_error 2 "no datastore" -- env -u VMHOST_DATASTORE ${VMHOST:-$(dirname "$VMBACKUP")/vmhost} vm list
# At most 32 snapshots.
"${H[@]}" vm create many --disk 1M
for i in $(seq 1 32); do "${H[@]}" snapshot create many "s$i" >/dev/null; done
expect_error 1 "already has 32 snapshots" -- "${H[@]}" snapshot create many s33
echo "ok: vmhost bad input"
