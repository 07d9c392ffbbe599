#!/usr/bin/env bash
# Quiesced snapshots: freeze/thaw hooks named in the .vmx run around the snapshot and the
# consistency achieved is recorded; a failing freeze hook fails the snapshot unless crash
# consistency is allowed; without hooks, quiescing a running guest is the same failure (a
# powered-off guest needs no freezing).
source "$(dirname "$0")/functions.sh"
requires python3
H=(${VMHOST:-$(dirname "$VMBACKUP")/vmhost} --datastore "$SCRATCH/ds")
"${H[@]}" init
"${H[@]}" vm create q --disk 8M
vmx="$SCRATCH/ds/q/q.vmx"
consistency() {
  "${H[@]}" --json snapshot list q | python3 -c "import json,sys; print({s['name']: s['consistency'] for s in json.load(sys.stdin)}['$1'])"
}
"${H[@]}" snapshot create q off --quiesce
[ "$(consistency off)" = crash ] || fail "powered off, no hooks: expected crash consistency"
"${H[@]}" vm power-on q
if "${H[@]}" snapshot create q plain --quiesce 2>err.txt; then fail "quiesced with no way to quiesce"; fi
grep -q "no way to quiesce" err.txt || fail "message: $(cat err.txt)"
"${H[@]}" snapshot create q plain --quiesce --allow-crash-consistent
[ "$(consistency plain)" = crash ] || fail "no hooks, crash allowed: expected crash consistency"

cat > freeze.sh <<HOOK
#!/bin/sh
# \$1 = freeze or thaw, \$2 = VM name
case "\$1" in
  freeze) echo "frozen \$2" > "$SCRATCH/marker"; echo freeze >> "$SCRATCH/log" ;;
  thaw) rm -f "$SCRATCH/marker"; echo thaw >> "$SCRATCH/log" ;;
esac
HOOK
chmod +x freeze.sh
cp freeze.sh thaw.sh
printf 'vmhost.freezeHook = "%s"\nvmhost.thawHook = "%s"\n' "$SCRATCH/freeze.sh" "$SCRATCH/thaw.sh" >> "$vmx"
"${H[@]}" snapshot create q fs --quiesce
[ "$(consistency fs)" = filesystem ] || fail "hooks: expected file-system consistency"
[ ! -e "$SCRATCH/marker" ] || fail "the thaw hook did not run (marker left behind)"
[ "$(cat "$SCRATCH/log" | tr '\n' ' ')" = "freeze thaw " ] || fail "hooks ran as: $(cat "$SCRATCH/log")"
"${H[@]}" snapshot create q unquiesced
[ "$(consistency unquiesced)" = crash ] || fail "no --quiesce: expected crash consistency"

printf '#!/bin/sh\necho "cannot freeze" >&2\nexit 3\n' > bad.sh
chmod +x bad.sh
sed -i "s|^vmhost.freezeHook = .*|vmhost.freezeHook = \"$SCRATCH/bad.sh\"|" "$vmx"
if "${H[@]}" snapshot create q refused --quiesce 2>err.txt; then fail "a failing freeze hook did not fail the snapshot"; fi
grep -q "freeze hook .*bad.sh failed (exit 3)" err.txt || fail "message: $(cat err.txt)"
"${H[@]}" --json snapshot list q | grep -q '"refused"' && fail "a failed snapshot was recorded"
"${H[@]}" snapshot create q fallback --quiesce --allow-crash-consistent
[ "$(consistency fallback)" = crash ] || fail "fallback: expected crash consistency"
echo "ok: quiesce"
