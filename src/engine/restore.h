// The restore job (SYSTEM.md section 2.2): a point's disks to raw files, to a new VM, or in
// place into the VM they came from, writing only what changed since the point.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "engine/progress.h"
#include "hv/hypervisor.h"
#include "repo/point.h"

namespace vmbackup::engine {

struct RestoreOptions {
  bool verify = false;  // re-read what was written, hash it, compare with the point's chunk ids
  // Chunks that cannot be read from the repository (damaged, missing) are left unwritten and
  // listed in the report, instead of failing the restore.
  bool ignore_damage = false;
  int threads = 2;
  std::vector<hv::TransportMode> transports = {hv::TransportMode::kSan, hv::TransportMode::kHotAdd,
                                               hv::TransportMode::kNbdSsl, hv::TransportMode::kNbd};
  const std::atomic<bool>* cancel = nullptr;
  double lock_wait_seconds = 0;  // while another job holds the VM (then kLocked)
  // When set, the disk being written (or verified) and the bytes done of it, for a display.
  DiskProgress* progress = nullptr;
};

// The power-on block a restore to a new VM sets until the VM is whole: a VM that carries it was
// left by an interrupted restore, and the next restore of that name replaces it.
inline constexpr std::string_view kIncompleteRestore = "vmbackup: incomplete restore";

struct RestoredDisk {
  int device_key = 0;
  uint64_t capacity = 0;
  std::string target, transport;
  std::string mode;            // "sparse" (data only), "changed areas", "whole disk"
  std::string why_whole;       // in place: why CBT could not narrow the write
  uint64_t bytes_planned = 0;  // the ranges considered
  uint64_t bytes_written = 0;  // data
  uint64_t bytes_zeroed = 0;   // zeros, written as holes where the target can
  bool verified = false;
  double seconds = 0;
  ExtentSet damaged;  // with ignore_damage: ranges the repository could not give, not written
};

struct RestoreReport {
  std::string point, target;
  std::vector<RestoredDisk> disks;
  std::vector<std::string> notes;
  double seconds = 0;
};

// Disk `device_key` of `point` to a new raw file at `path` (which must not exist): sparse,
// only the data is written, with O_DIRECT where the file system allows.
Result<RestoreReport> RestoreToFile(repo::Repository& repo, const repo::Point& point,
                                    int device_key, const std::string& path,
                                    const RestoreOptions& options);

// Disk `device_key` of `point` as one byte stream, in order: `write` gets the data and
// `zeros` the lengths of runs of zeros (a sink may seek over them). For standard output.
Result<RestoreReport> RestoreToStream(repo::Repository& repo, const repo::Point& point,
                                      int device_key,
                                      const std::function<Status(std::span<const uint8_t>)>& write,
                                      const std::function<Status(uint64_t)>& zeros,
                                      const RestoreOptions& options);

// Every disk of `point` into a new VM called `name` on `hv`.
Result<RestoreReport> RestoreToNewVm(hv::Hypervisor& hv, repo::Repository& repo,
                                     const repo::Point& point, const std::string& name,
                                     const RestoreOptions& options);

// Into the VM the point came from (or `vm_name`), which must be powered off: a snapshot,
// change tracking asked what changed since the point's change ids, only those areas written
// into the snapshot, revert to it, remove it. A disk whose change id the host no longer knows
// is written whole, and the report says why.
Result<RestoreReport> RestoreInPlace(hv::Hypervisor& hv, repo::Repository& repo,
                                     const repo::Point& point, const std::string& vm_name,
                                     const RestoreOptions& options);

}  // namespace vmbackup::engine
