// Live counters of a job, for a progress display (written by the job's threads, read by another).
#pragma once

#include <atomic>
#include <cstdint>

namespace vmbackup::engine {

struct DiskProgress {
  int device_key = 0;
  std::atomic<uint64_t> total{0}, done{0};
};

}  // namespace vmbackup::engine
