#include "io/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::io {

Result<std::unique_ptr<PosixFile>> PosixFile::Open(const std::string& path, OpenMode mode) {
  int flags = O_CLOEXEC;
  bool writable = true;
  switch (mode) {
    case OpenMode::kReadOnly:
      flags |= O_RDONLY;
      writable = false;
      break;
    case OpenMode::kReadWrite: flags |= O_RDWR; break;
    case OpenMode::kCreateNew: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    case OpenMode::kCreateTruncate: flags |= O_RDWR | O_CREAT | O_TRUNC; break;
  }
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return PosixError("open " + path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = PosixError("stat " + path, errno);
    ::close(fd);
    return s;
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return InvalidArgumentError(path + ": is a directory");
  }
  uint64_t size = uint64_t(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    off_t end = ::lseek(fd, 0, SEEK_END);
    if (end >= 0) size = uint64_t(end);
  }
  return std::unique_ptr<PosixFile>(new PosixFile(fd, path, size, writable));
}

PosixFile::~PosixFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status PosixFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), size_)) {
    return CorruptionError(StrFormat("%s: read of %zu bytes at offset %llu: file ends at %llu",
                                     path_.c_str(), buf.size(), (unsigned long long)offset,
                                     (unsigned long long)size_));
  }
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd_, buf.data() + done, buf.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(
          StrFormat("%s: read at offset %llu", path_.c_str(), (unsigned long long)(offset + done)),
          errno);
    }
    if (n == 0) {
      return CorruptionError(StrFormat("%s: unexpected end of file at offset %llu", path_.c_str(),
                                       (unsigned long long)(offset + done)));
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Status PosixFile::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  if (!writable_) return PermissionDeniedError(path_ + ": opened read-only");
  auto end = CheckedAdd(offset, data.size());
  if (!end) return InvalidArgumentError(path_ + ": write offset overflows");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(
          StrFormat("%s: write at offset %llu", path_.c_str(), (unsigned long long)(offset + done)),
          errno);
    }
    done += size_t(n);
  }
  if (*end > size_) size_ = *end;
  return Status::Ok();
}

Status PosixFile::Flush() {
  if (!writable_) return Status::Ok();
  if (::fdatasync(fd_) != 0) return PosixError("fsync " + path_, errno);
  return Status::Ok();
}

Status PosixFile::Truncate(uint64_t size) {
  if (!writable_) return PermissionDeniedError(path_ + ": opened read-only");
  if (::ftruncate(fd_, off_t(size)) != 0) return PosixError("truncate " + path_, errno);
  size_ = size;
  return Status::Ok();
}

Status PosixFile::WriteZeroes(uint64_t offset, uint64_t length) {
  if (!writable_) return PermissionDeniedError(path_ + ": opened read-only");
  auto end = CheckedAdd(offset, length);
  if (!end) return InvalidArgumentError(path_ + ": write offset overflows");
  if (length == 0) return Status::Ok();
  const uint64_t inside = std::min(*end, size_);
  if (offset < inside) {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset),
                    off_t(inside - offset)) != 0) {
      if (errno != EOPNOTSUPP && errno != ENOSYS) {
        return PosixError(
            StrFormat("%s: punch a hole at %llu", path_.c_str(), (unsigned long long)offset),
            errno);
      }
      VMBACKUP_RETURN_IF_ERROR(BlockWriter::WriteZeroes(offset, inside - offset));
    }
  }
  if (*end > size_) VMBACKUP_RETURN_IF_ERROR(Truncate(*end));  // the tail: a hole
  return Status::Ok();
}

Result<ExtentSet> PosixFile::AllocatedExtents(uint64_t offset, uint64_t length) {
  ExtentSet out;
  uint64_t end = offset + std::min(length, size_ > offset ? size_ - offset : 0);
  uint64_t pos = offset;
  while (pos < end) {
    off_t data = ::lseek(fd_, off_t(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      // File system without SEEK_DATA: everything may hold data.
      out.Add(pos, end - pos);
      break;
    }
    if (uint64_t(data) >= end) break;
    off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    uint64_t hole_at = hole < 0 ? end : std::min<uint64_t>(uint64_t(hole), end);
    out.Add(uint64_t(data), hole_at - uint64_t(data));
    pos = hole_at;
  }
  return out;
}

Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_size) {
  // Read to the end, not to the size fstat gives: a pipe (`--from <(...)`) has none.
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return PosixError("open " + path, errno);
  std::string s;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status err = PosixError("read " + path, errno);
      ::close(fd);
      return err;
    }
    if (n == 0) break;
    if (s.size() + size_t(n) > max_size) {
      ::close(fd);
      return InvalidArgumentError(StrFormat("%s: more than the %llu bytes allowed", path.c_str(),
                                            (unsigned long long)max_size));
    }
    s.append(buf, size_t(n));
  }
  ::close(fd);
  return s;
}

Status WriteFileAtomic(const std::string& path, std::string_view contents) {
  std::string tmp = path + ".tmp";
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto f, PosixFile::Open(tmp, OpenMode::kCreateTruncate));
    Status s = f->WriteAt(0, {reinterpret_cast<const uint8_t*>(contents.data()), contents.size()});
    if (s.ok()) s = f->Flush();
    if (!s.ok()) {
      ::unlink(tmp.c_str());  // a full disk leaves no half-written file behind
      return s;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = PosixError("rename " + tmp + " to " + path, errno);
    ::unlink(tmp.c_str());
    return s;
  }
  int dfd = ::open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Status CheckInside(const std::string& root, const std::string& path) {
  auto resolve = [](const std::string& p) -> Result<std::string> {
    char* r = ::realpath(p.c_str(), nullptr);
    if (!r) return PosixError("resolve " + p, errno);
    std::string out(r);
    std::free(r);
    return out;
  };
  VMBACKUP_ASSIGN_OR_RETURN(std::string top, resolve(root));
  Result<std::string> real = resolve(path);
  if (!real && real.error().code() == ErrorCode::kNotFound) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string folder, resolve(DirName(path)));
    real = folder + "/" + BaseName(path);
  }
  if (!real) return real.error();
  if (*real != top && real->compare(0, top.size() + 1, top + "/") != 0) {
    return PermissionDeniedError(path + " resolves to " + *real + ", outside " + root +
                                 ": refused (a file name may not leave the datastore)");
  }
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (!name.empty() && name[0] == '/') return name;
  if (dir.empty() || dir == ".") return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace vmbackup::io
