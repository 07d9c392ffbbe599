#!/usr/bin/env bash
# The S3 backend on a real S3 server: Ceph's radosgw (tests/rgw/rgw-up: mon, memstore OSD,
# radosgw on loopback), the backend conformance suite and the S3-specific checks of
# vmbackup_s3_rgw_test (src/s3/s3_backend_rgw_test.cc).
source "$(dirname "$0")/functions.sh"
requires ceph-mon ceph-osd radosgw radosgw-admin monmaptool curl
T=$(dirname "$VMBACKUP")/../s3/vmbackup_s3_rgw_test
[ -x "$T" ] || fail "no $T"
R=$SCRATCH/rgw
trap 'bash "$E2E_DIR/../rgw/rgw-up" --stop "$R"; rm -rf "$SCRATCH"' EXIT
eval "$(bash "$E2E_DIR/../rgw/rgw-up" "$R")" || fail "rgw-up"
export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
"$T" > rgw_test.log 2>&1 || fail "vmbackup_s3_rgw_test: $(tail -30 rgw_test.log)"
echo "s3 on rgw: all passed"
