#include "cli/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

namespace vmbackup::cli {

int ReportError(const Status& s) {
  std::fprintf(stderr, "vmbackup: %s\n", s.message().c_str());
  return s.code() == ErrorCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

StreamSink::StreamSink(int fd) : fd_(fd) {
  struct stat st;
  int flags = ::fcntl(fd, F_GETFL);
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flags >= 0 && !(flags & O_APPEND)) {
    off_t here = ::lseek(fd, 0, SEEK_CUR);
    if (here >= 0) {
      seekable_ = true;
      start_ = uint64_t(here);
    }
  }
}

Status StreamSink::Write(std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write output", errno);
    }
    done += size_t(n);
  }
  pos_ += data.size();
  return Status::Ok();
}

Status StreamSink::WriteZeros(uint64_t length) {
  if (seekable_) {
    if (::lseek(fd_, off_t(length), SEEK_CUR) < 0) return PosixError("seek output", errno);
    pos_ += length;
    return Status::Ok();
  }
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  while (length > 0) {
    size_t n = size_t(std::min<uint64_t>(length, zeros.size()));
    VMBACKUP_RETURN_IF_ERROR(Write({zeros.data(), n}));
    length -= n;
  }
  return Status::Ok();
}

Status StreamSink::Finish() {
  if (seekable_) {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return PosixError("stat output", errno);
    uint64_t end = start_ + pos_;
    if (uint64_t(st.st_size) < end && ::ftruncate(fd_, off_t(end)) != 0) {
      return PosixError("extend output", errno);
    }
  }
  return Status::Ok();
}

}  // namespace vmbackup::cli
