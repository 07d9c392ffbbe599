#include "cli/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <vector>

#include "base/strings.h"

namespace vmbackup::cli {

int ReportError(const Status& s) {
  std::fprintf(stderr, "vmbackup: %s\n", s.message().c_str());
  switch (s.code()) {
    case ErrorCode::kInvalidArgument: return kExitUsage;
    case ErrorCode::kLocked: return kExitLocked;
    case ErrorCode::kNoRepository: return kExitNoRepository;
    case ErrorCode::kUnauthenticated: return kExitWrongKey;
    case ErrorCode::kCancelled: return kExitInterrupted;
    default: return kExitFailure;
  }
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

Status CopyDiskRange(vmdk::Disk& disk, uint64_t offset, uint64_t length, StreamSink& out) {
  if (offset > disk.size() || length > disk.size() - offset) {
    return InvalidArgumentError(StrFormat(
        "range %llu+%llu lies past the end of the disk (%llu bytes)", (unsigned long long)offset,
        (unsigned long long)length, (unsigned long long)disk.size()));
  }
  std::vector<vmdk::ChainRun> runs;
  if (length) VMBACKUP_RETURN_IF_ERROR(disk.MapChain(offset, length, &runs));
  constexpr uint64_t kChunk = 8 << 20;
  std::vector<uint8_t> buf;
  for (const auto& r : runs) {
    if (r.state != vmdk::BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(out.WriteZeros(r.length));
      continue;
    }
    for (uint64_t pos = r.offset; pos < r.offset + r.length;) {
      uint64_t n = std::min(kChunk, r.offset + r.length - pos);
      buf.resize(n);
      VMBACKUP_RETURN_IF_ERROR(disk.ReadAt(pos, buf));
      VMBACKUP_RETURN_IF_ERROR(out.Write(buf));
      pos += n;
    }
  }
  return out.Finish();
}

int RunApp(CLI::App& app, int argc, char** argv, const int& exit_code, const char* prog) {
  // Everything the tools create (repository objects, restored images, the files qemu-img writes
  // for them, the catalog) is private to the user whatever the umask, as restic does; the code
  // asks for 0600/0700 too, this covers the programs it runs.
  ::umask(077);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  } catch (const std::exception& e) {
    // Last resort: our own code returns errors as values.
    std::fprintf(stderr, "%s: internal error: %s\n", prog, e.what());
    return kExitFailure;
  }
  return exit_code;
}

}  // namespace vmbackup::cli
