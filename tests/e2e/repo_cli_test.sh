#!/usr/bin/env bash
# The repository commands that exist so far: init (plain, key file, passphrase), list, show,
# protect, and their errors (wrong key, missing key, non-empty folder, bad chunk size).
source "$(dirname "$0")/functions.sh"
V=$VMBACKUP
expect_error() {  # WANT_EXIT FRAGMENT -- COMMAND...
  local want=$1 fragment=$2 rc=0
  shift 3
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$fragment" err.txt || fail "'$*': stderr lacks '$fragment': $(cat err.txt)"
}
"$V" init --repo plain --json | grep -q '"encrypted": false' || fail "plain init"
[ "$("$V" list --repo plain --json)" = "[]" ] || fail "a new repository lists points"
VMBACKUP_REPO=plain "$V" list >/dev/null || fail "VMBACKUP_REPO is not used"
# Libraries only some commands need are loaded when first called (base/lazy_library.h): a
# repository command maps none of them. libcrypto it needs, loaded on a thread while the command
# line is built, not before main.
files=$(LD_DEBUG=files "$V" list --repo plain 2>&1 >/dev/null)
loaded=$(grep -o "file=[^ ]*" <<<"$files" | sort -u)
for lib in libvirt libxml2 libguestfs libtsk libcurl libnbd libssl; do
  ! grep -q "file=$lib" <<<"$loaded" || fail "vmbackup list loaded $lib: $loaded"
done
grep -q "file=libcrypto.*dynamically loaded" <<<"$files" ||
  fail "libcrypto was not loaded on first use: $(grep libcrypto <<<"$files")"
# A command's run builds its own command group only (cli/main.cc): each one listed in the full
# help still parses and shows its own help.
commands=$("$V" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF {print $1}')
[ "$(wc -w <<<"$commands")" -ge 20 ] || fail "vmbackup --help lists too few commands: $commands"
for c in $commands; do
  "$V" "$c" --help | grep -q "Usage: .* $c" || fail "vmbackup $c --help shows no usage of $c"
done
expect_error 1 "is not empty" -- "$V" init --repo plain
expect_error 2 "chunk size must be a power of two" -- "$V" init --repo odd --chunk-size 100K
expect_error 1 "no restore point nope" -- "$V" show --repo plain nope
expect_error 10 "is not a repository" -- "$V" list --repo "$SCRATCH"
expect_error 2 "no repository" -- env -u VMBACKUP_REPO "$V" list

"$V" init --repo enc --encrypt --key-file key >/dev/null
[ "$(tr -d '\n' < key | wc -c)" = 128 ] || fail "the key file does not hold 64 bytes as hex"
[ "$(stat -c %a key)" = 600 ] || fail "the key file is readable by others"
"$V" list --repo enc --key-file key >/dev/null || fail "the right key is refused"
head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' > other
expect_error 11 "wrong key for repository" -- "$V" list --repo enc --key-file other
expect_error 11 "give its --key-file" -- "$V" list --repo enc
grep -q '"encryption": "aes-256-gcm"' enc/config/config || fail "config does not say encrypted"

echo "correct horse battery" > pass
"$V" init --repo pp --encrypt --passphrase-file pass >/dev/null
VMBACKUP_PASSPHRASE="correct horse battery" "$V" list --repo pp >/dev/null || fail "passphrase from the environment"
expect_error 11 "wrong key" -- env VMBACKUP_PASSPHRASE=wrong "$V" list --repo pp
"$V" verify --repo plain | grep -q "verified 0 points" || fail "verify of an empty repository"
"$V" check --repo plain | grep -q "checked 0 packs" || fail "check of an empty repository"

# prune refuses to run without a rule; gc of an empty repository; locks.
expect_error 2 "no keep rule given" -- "$V" prune --repo plain
"$V" prune --repo plain --keep-last 3 --dry-run | grep -q "would remove 0 of 0 points" || fail "prune dry run"
"$V" gc --repo plain --json | grep -q '"packs_deleted": 0' || fail "gc of an empty repository"
host=$(hostname)
sleep 300 & holder=$!
printf '{"host":"%s","pid":%d,"exclusive":false,"purpose":"backup vm7","time":%d}' \
  "$host" "$holder" "$(date +%s)" > plain/locks/live
expect_error 3 "shared lock of backup vm7" -- "$V" gc --repo plain
kill $holder; wait $holder 2>/dev/null || true
"$V" gc --repo plain >out.txt 2>err.txt || fail "a dead process's lock blocks gc: $(cat err.txt)"
grep -q "removed a stale shared lock of backup vm7" err.txt || fail "the stale lock was not reported"
[ -z "$(ls plain/locks)" ] || fail "locks left behind: $(ls plain/locks)"
"$V" jobs --repo plain --json > jobs.json
python3 - jobs.json <<'PY' || fail "the job history: $(cat jobs.json)"
import json, sys
jobs = json.load(open(sys.argv[1]))
kinds = [(j["kind"], j["status"]) for j in jobs]
assert kinds == [("gc", "ok"), ("gc", "ok")], kinds  # newest first; dry runs and refusals are not jobs
PY

# Keys: a second passphrase and a key file open the same data; the key in use cannot be
# removed through itself; passwd replaces it; nothing is re-encrypted (the packs stay as they are).
echo "second phrase" > pass2
VMBACKUP_PASSPHRASE="correct horse battery" "$V" key add --repo pp --new-passphrase-file pass2 >/dev/null \
  || fail "key add"
VMBACKUP_PASSPHRASE="correct horse battery" "$V" key add --repo pp --new-key-file pp.key >/dev/null \
  || fail "key add (key file)"
[ "$(stat -c %a pp.key)" = 600 ] || fail "a new key file is readable by others"
"$V" key list --repo pp --passphrase-file pass2 --json > keys.json || fail "key list"
python3 - keys.json <<'PY' || fail "key list: $(cat keys.json)"
import json, sys
keys = json.load(open(sys.argv[1]))
assert len(keys) == 3, keys
assert sum(k["current"] for k in keys) == 1
assert sorted(k["type"] for k in keys) == ["keyfile", "scrypt", "scrypt"], keys
PY
"$V" list --repo pp --key-file pp.key >/dev/null || fail "the added key file does not open"
first=$(python3 -c "import json; print([k['id'] for k in json.load(open('keys.json')) if not k['current']][0])")
current=$(python3 -c "import json; print([k['id'] for k in json.load(open('keys.json')) if k['current']][0])")
expect_error 1 "the one that opened" -- "$V" key remove --repo pp --passphrase-file pass2 "$current"
echo "third phrase" > pass3
"$V" key passwd --repo pp --passphrase-file pass2 --new-passphrase-file pass3 >/dev/null || fail "key passwd"
expect_error 11 "wrong key" -- "$V" list --repo pp --passphrase-file pass2
"$V" list --repo pp --passphrase-file pass3 >/dev/null || fail "the new passphrase does not open"
expect_error 2 "is empty" -- "$V" key add --repo pp --passphrase-file pass3 --new-passphrase-file /dev/null
expect_error 1 "not encrypted" -- "$V" key list --repo plain
echo "ok: repository commands"
