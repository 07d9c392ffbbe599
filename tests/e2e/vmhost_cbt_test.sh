#!/usr/bin/env bash
# CBT ground truth, paging and invalidation (see vmhost_cbt.py).
source "$(dirname "$0")/functions.sh"
requires python3 qemu-img
VMHOST=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
python3 "$E2E_DIR/vmhost_cbt.py" "$VMHOST" "$SCRATCH/ds" 5
