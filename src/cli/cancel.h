// Long jobs (backup, restore, test-restore) stop cleanly on SIGINT and SIGTERM: they poll this
// flag, end early, and remove what they started (a snapshot, exports, scratch files).
#pragma once

#include <atomic>

namespace vmbackup::cli {

// Installs the handlers (again is harmless) and returns the flag they set.
std::atomic<bool>* CancelOnSignals();

}  // namespace vmbackup::cli
