#!/usr/bin/env bash
# Random writes, snapshot create, delete (all three cases), delete-all, revert and consolidate:
# after every step qemu-img reads the model's bytes for the current state and every snapshot,
# and qemu-img check is clean on every delta.
source "$(dirname "$0")/functions.sh"
requires qemu-img python3
VMHOST=${VMHOST:-$(dirname "$VMBACKUP")/vmhost}
python3 "$E2E_DIR/vmhost_model.py" "$VMHOST" "$SCRATCH/ds" 11 50
