#!/usr/bin/env bash
# The S3 backend on a real S3 server: Ceph's radosgw (tests/rgw/rgw-up: mon, memstore OSD,
# radosgw on loopback), the backend conformance suite and the S3-specific checks of
# vmbackup_s3_rgw_test (src/s3/s3_backend_rgw_test.cc), over http and over https. Then HTTPS
# from the command line: a server whose certificate no CA vouches for is refused, naming
# --s3-ca-file, as are a certificate for another name, a CA that did not sign it and a CA file
# that is not there; with the right CA a backup and a restore go through, byte-identical.
source "$(dirname "$0")/functions.sh"
requires ceph-mon ceph-osd radosgw radosgw-admin monmaptool curl openssl
T=$(dirname "$VMBACKUP")/../s3/vmbackup_s3_rgw_test
V=$VMBACKUP
H=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
[ -x "$T" ] || fail "no $T"
R=$SCRATCH/rgw
trap 'bash "$E2E_DIR/../rgw/rgw-up" --stop "$R"; rm -rf "$SCRATCH"' EXIT
eval "$(bash "$E2E_DIR/../rgw/rgw-up" "$R")" || fail "rgw-up"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
S3_ENDPOINT=$S3_ENDPOINT "$T" > rgw_test.log 2>&1 || fail "vmbackup_s3_rgw_test: $(tail -30 rgw_test.log)"
S3_ENDPOINT=$S3_TLS_ENDPOINT S3_CA_FILE=$S3_CA_FILE "$T" > rgw_tls_test.log 2>&1 ||
  fail "vmbackup_s3_rgw_test over https: $(tail -30 rgw_tls_test.log)"

# HTTPS from the command line.
REPO="s3:$S3_TLS_ENDPOINT/tls/repo"
expect_failure 11 "not trusted" -- "$V" init --repo "$REPO"
grep -qF -- "--s3-ca-file" err.txt || fail "the refusal does not say how to trust the server: $(cat err.txt)"
grep -qF -- "thumbprint" err.txt && fail "the refusal names vSphere's thumbprint: $(cat err.txt)"
expect_failure 2 "--s3-ca-file $SCRATCH/none: not a readable file" -- \
  "$V" init --repo "$REPO" --s3-ca-file "$SCRATCH/none"
# Another CA, made here: it did not sign radosgw's certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=another CA" -keyout other.key \
  -out other.pem 2>/dev/null
expect_failure 11 "unable to get local issuer certificate" -- \
  "$V" init --repo "$REPO" --s3-ca-file other.pem
"$V" init --repo "$REPO" --s3-ca-file "$S3_CA_FILE" >/dev/null || fail "init over https"
# The certificate is for 127.0.0.1: the same server called localhost is refused.
expect_failure 11 "localhost" -- \
  "$V" list --repo "s3:${S3_TLS_ENDPOINT/127.0.0.1/localhost}/tls/repo" --s3-ca-file "$S3_CA_FILE"
grep -qF "not trusted" err.txt || fail "another name: $(cat err.txt)"

export VMHOST_DATASTORE=$SCRATCH/ds
"$H" init >/dev/null
"$H" vm create web --disk 32M --cbt >/dev/null
"$H" vm power-on web >/dev/null
head -c 6M /dev/urandom > rand
"$H" disk write web 0 --offset 3M --from rand >/dev/null
"$H" disk read web 0 --offset 0 --length 32M > disk.raw
"$V" backup --repo "$REPO" --s3-ca-file "$S3_CA_FILE" --source "vmhost://$SCRATCH/ds" --vm web \
  --no-progress >/dev/null || fail "backup over https"
"$V" restore --repo "$REPO" --s3-ca-file "$S3_CA_FILE" latest --to-file restored.raw --verify \
  >/dev/null || fail "restore over https"
cmp -s restored.raw disk.raw || fail "the restore over https differs from the disk"
echo "s3 on rgw (http and https): all passed"
