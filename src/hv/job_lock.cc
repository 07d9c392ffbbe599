#include "hv/job_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "base/process.h"
#include "base/strings.h"

namespace vmbackup::hv {
namespace {

// FNV-1a over the URI and the VM name, twice with different seeds: a file name of [0-9a-f]
// that the URI's characters cannot escape.
std::string LockName(const std::string& uri, const std::string& vm) {
  const std::string key = uri + "\n" + vm;
  uint64_t a = 1469598103934665603ull, b = 1099511628211ull ^ 0x9e3779b97f4a7c15ull;
  for (unsigned char c : key) {
    a = (a ^ c) * 1099511628211ull;
    b = (b ^ c) * 0x100000001b3ull + 7;
  }
  return StrFormat("vm-%016llx%016llx.lock", (unsigned long long)a, (unsigned long long)b);
}

std::string ReadHolder(int fd) {
  char buf[512];
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "another job";
  std::string s(buf, size_t(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "another job" : s;
}

}  // namespace

std::string JobLockDir() {
  if (const char* d = std::getenv("VMBACKUP_LOCK_DIR"); d && *d) return d;
  if (::geteuid() == 0 && ::access("/run/lock", W_OK) == 0) return "/run/lock/vmbackup";
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r && *r) return std::string(r) + "/vmbackup";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/vmbackup/locks";
  return "/tmp/vmbackup-locks-" + std::to_string(::geteuid());
}

Result<std::unique_ptr<JobLock>> JobLock::Acquire(const std::string& host_uri,
                                                  const std::string& vm, const std::string& job,
                                                  double wait_seconds) {
  const std::string dir = JobLockDir();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IOError("create the job lock folder " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  const std::string path = dir + "/" + LockName(host_uri, vm);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return PosixError("open the job lock " + path, errno);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(wait_seconds * 1000));
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return PosixError("lock " + path, err);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string holder = ReadHolder(fd);
      ::close(fd);
      return LockedError("VM " + vm + " is busy: " + holder +
                         " is running on it (--lock-wait SECONDS waits for it)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  // Ours: say who holds it.
  const std::string who =
      StrFormat("a %s job (pid %lld on %s, since %s)", job.c_str(), (long long)::getpid(),
                HostName().c_str(), UtcNowRfc3339().c_str());
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, who.data(), who.size(), 0);
  return std::unique_ptr<JobLock>(new JobLock(fd));
}

JobLock::~JobLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace vmbackup::hv
