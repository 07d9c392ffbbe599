// The generation of a VM's lock file (.vmhost.lock): a counter that every holder of the
// exclusive lock raises as soon as it has the lock, before it changes anything. A reader under
// the shared lock that sees the same generation as at its last request knows that no one has
// held the lock exclusively since, so no .vmx, .vmsd or disk file changed through vmhost: it can
// skip re-reading them. Read and raise only while holding the flock.
//
// The counter is the file's size, not bytes in it: growing a file by one byte allocates no
// block, so raising it cannot fail on a full disk (where deleting a snapshot must still work),
// and the file stays empty on disk.
#pragma once

#include <cstdint>

#include "base/result.h"

namespace vmbackup::host {

Result<uint64_t> ReadLockGeneration(int lock_fd);
// Raises the generation by one and returns the new value.
Result<uint64_t> RaiseLockGeneration(int lock_fd);

}  // namespace vmbackup::host
