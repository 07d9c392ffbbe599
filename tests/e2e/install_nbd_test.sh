#!/usr/bin/env bash
# `cmake --install` puts vmbackup, vmhost and the nbdkit plugin where they find each other (a
# backup over the nbd transport runs from the installed programs), with bash completion and
# manual pages generated from the commands' own --help.
source "$(dirname "$0")/functions.sh"
requires cmake nbdkit bash
build=$(cd "$(dirname "$VMBACKUP")/../.." && pwd)
prefix=$SCRATCH/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null || fail "cmake --install"
V=$prefix/bin/vmbackup
H=$prefix/bin/vmhost
for f in bin/vmbackup bin/vmhost share/bash-completion/completions/vmbackup \
         share/bash-completion/completions/vmhost share/man/man1/vmbackup.1 share/man/man1/vmhost.1; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
ls "$prefix"/lib*/vmbackup/nbdkit-vmhost-plugin.so >/dev/null 2>&1 || ls "$prefix"/lib/*/vmbackup/nbdkit-vmhost-plugin.so >/dev/null \
  || fail "the plugin is not installed"
[ "$("$V" --version)" = "$("$VMBACKUP" --version)" ] || fail "--version"

export VMHOST_DATASTORE=$SCRATCH/ds VMBACKUP_REPO=$SCRATCH/repo
"$H" init >/dev/null
"$H" vm create web --disk 16M --cbt >/dev/null
"$H" vm power-on web >/dev/null
"$H" disk write web 0 --offset 1M --pattern 0x61 --length 1M >/dev/null
"$V" init >/dev/null
"$V" backup --source "vmhost://$SCRATCH/ds" --vm web --transport nbd --json > b.json \
  || fail "a backup over nbd from the installed programs"
grep -q '"transport": "nbd"' b.json || fail "not over nbd: $(cat b.json)"

# Completion, from the installed script.
got=$(bash -c "source '$prefix/share/bash-completion/completions/vmbackup'
  COMP_WORDS=(vmbackup rest); COMP_CWORD=1; _vmbackup; echo \${COMPREPLY[*]}
  COMP_WORDS=(vmbackup restore --to-f); COMP_CWORD=2; _vmbackup; echo \${COMPREPLY[*]}
  COMP_WORDS=(vmbackup key pa); COMP_CWORD=2; _vmbackup; echo \${COMPREPLY[*]}")
[ "$got" = "$(printf 'restore\n--to-file\npasswd')" ] || fail "completion: $got"
got=$(bash -c "source '$prefix/share/bash-completion/completions/vmhost'
  COMP_WORDS=(vmhost vm cr); COMP_CWORD=2; _vmhost; echo \${COMPREPLY[*]}")
[ "$got" = create ] || fail "vmhost completion: $got"
# The manual page holds every command's --help text.
grep -q '^\.TH vmbackup 1' "$prefix/share/man/man1/vmbackup.1" || fail "not a manual page"
"$V" help restore > help.txt
grep -qF -- "$(grep -- '--ignore-damage' help.txt | head -1 | sed 's/-/\\-/g')" "$prefix/share/man/man1/vmbackup.1" \
  || fail "the manual page lacks restore's --help text"
grep -q -- "--ignore-damage" <("$V" restore --help) || fail "help restore differs from restore --help"
echo "ok: install"
