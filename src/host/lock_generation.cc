#include "host/lock_generation.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace vmbackup::host {

Result<uint64_t> ReadLockGeneration(int lock_fd) {
  struct stat st;
  if (::fstat(lock_fd, &st) != 0) return PosixError("stat the VM lock", errno);
  return uint64_t(st.st_size);
}

Result<uint64_t> RaiseLockGeneration(int lock_fd) {
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t g, ReadLockGeneration(lock_fd));
  ++g;
  while (::ftruncate(lock_fd, off_t(g)) != 0) {
    if (errno != EINTR) return PosixError("raise the VM lock's generation", errno);
  }
  return g;
}

}  // namespace vmbackup::host
