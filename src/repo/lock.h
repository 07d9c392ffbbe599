// Repository locks (docs/repository-format.md section 8). Backups take shared locks; prune and
// gc take exclusive ones, so gc never deletes data a running backup is about to reference.
//
// A lock is an object locks/<random hex>. Taking one writes our object first and then looks at
// the others: on a conflict with a live lock ours is removed again and the attempt repeats until
// the wait runs out (two racing takers both back off; the random jitter lets one win next time).
// A held lock is refreshed every few minutes (a new object, then the old one removed), so a lock
// is stale when its process is gone (same host) or it was not refreshed for 30 minutes. Stale
// locks are removed by the next taker: a killed process never locks users out.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/backend.h"

namespace vmbackup::repo {

struct LockInfo {
  std::string name;  // the object's name
  std::string host;
  int64_t pid = 0;
  uint64_t start = 0;  // the process's start time (clock ticks after boot), against pid reuse
  bool exclusive = false;
  std::string purpose;  // "backup", "gc", ... (never a VM name: locks are not encrypted)
  int64_t time = 0;     // when it was last refreshed (Unix seconds)
  std::string damage;   // why the lock object could not be read (then it is stale)
};

inline constexpr int64_t kLockStaleSeconds = 30 * 60;
inline constexpr int64_t kLockRefreshSeconds = 5 * 60;

// Every lock object; unreadable ones come back with `damage` set, time 0 (hence stale).
Result<std::vector<LockInfo>> ListLocks(storage::Backend& backend);
// True when the lock's process is gone (same host) or it is older than kLockStaleSeconds.
bool IsStale(const LockInfo& lock, int64_t now);
// "exclusive lock of gc (pid 12 on host h, since 2026-11-22T08:00:00Z)", for messages.
std::string DescribeLock(const LockInfo& lock);

struct LockOptions {
  bool exclusive = false;
  std::string purpose;
  double wait_seconds = 0;  // how long to keep trying while another lock is in the way
};

class RepoLock {
 public:
  // kUnavailable naming the holder when a live conflicting lock stays in the way.
  static Result<std::unique_ptr<RepoLock>> Acquire(storage::Backend& backend,
                                                   const LockOptions& options);
  ~RepoLock();  // Release(), errors ignored
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;

  // Stops refreshing and removes the lock object.
  Status Release();
  // Stale locks removed while this one was taken, for the job's log.
  const std::vector<LockInfo>& broken() const { return broken_; }

 private:
  RepoLock(storage::Backend& backend, LockInfo info) : backend_(backend), info_(std::move(info)) {}
  void RefreshLoop();

  storage::Backend& backend_;
  LockInfo info_;
  std::vector<LockInfo> broken_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  bool released_ = false;
  std::thread refresher_;
};

}  // namespace vmbackup::repo
