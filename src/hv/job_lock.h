// One job per VM at a time: a backup, an in-place restore or a restore to a new VM takes the
// VM's job lock first, so that it never mistakes another running job's snapshot for one left by
// a killed run, and two jobs never write the same disks.
//
// The lock is a file held with flock() in a lock folder of this machine, named after the host's
// URI and the VM: the kernel drops it when the process dies, so a killed job never leaves the VM
// locked. The file says who holds it, for the message a second job gets. The folder is
// VMBACKUP_LOCK_DIR, else /run/lock/vmbackup (root), else $XDG_RUNTIME_DIR/vmbackup, else
// ~/.cache/vmbackup/locks. Jobs on other machines are not seen (as with VDDK proxies).
#pragma once

#include <memory>
#include <string>

#include "base/result.h"

namespace vmbackup::hv {

class JobLock {
 public:
  // Waits up to `wait_seconds` while another job holds the VM; then kLocked naming that job
  // ("backup by pid 123 on host, since ...").
  static Result<std::unique_ptr<JobLock>> Acquire(const std::string& host_uri,
                                                  const std::string& vm, const std::string& job,
                                                  double wait_seconds);
  ~JobLock();
  JobLock(const JobLock&) = delete;
  JobLock& operator=(const JobLock&) = delete;

 private:
  explicit JobLock(int fd) : fd_(fd) {}
  int fd_;
};

// The lock folder (see above).
std::string JobLockDir();

}  // namespace vmbackup::hv
