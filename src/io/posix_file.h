// PosixFile: a file on the local file system as a BlockWriter, plus the few file-system
// helpers vmbackup needs (atomic replace, existence). All errno handling goes through
// PosixError.
#pragma once

#include <memory>
#include <string>

#include "io/block_device.h"

namespace vmbackup::io {

enum class OpenMode {
  kReadOnly,
  kReadWrite,
  kCreateNew,       // O_CREAT | O_EXCL: fails with kAlreadyExists when the file exists
  kCreateTruncate,  // O_CREAT | O_TRUNC
};

class PosixFile final : public BlockWriter {
 public:
  static Result<std::unique_ptr<PosixFile>> Open(const std::string& path, OpenMode mode);
  ~PosixFile() override;
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  uint64_t size() const override { return size_; }
  // Reads past the end of the file fail with kCorruption ("file ends at N").
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  // Writes may extend the file.
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override;
  // Punches a hole (the range stays inside the file's size; past it the file grows sparse);
  // writes zeros where the file system cannot punch.
  Status WriteZeroes(uint64_t offset, uint64_t length) override;
  Status Flush() override;
  // Holes (SEEK_HOLE) are reported as unallocated.
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override;
  std::string name() const override { return path_; }

  // Sets the file size (ftruncate): growing leaves a hole.
  Status Truncate(uint64_t size);
  bool writable() const { return writable_; }
  int fd() const { return fd_; }

 private:
  PosixFile(int fd, std::string path, uint64_t size, bool writable)
      : fd_(fd), path_(std::move(path)), size_(size), writable_(writable) {}
  int fd_;
  std::string path_;
  uint64_t size_;
  bool writable_;
};

// Reads a whole small file; files larger than `max_size` are kInvalidArgument.
Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_size);

// Replaces `path` atomically with `contents`: temp file (`path`.tmp, removed on failure),
// fsync, rename, fsync the folder.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

bool PathExists(const std::string& path);
// kPermissionDenied unless `path` resolves (symlinks and "..", included) to `root` or a file
// under it; a path that does not exist yet is judged by its folder. Guards every file name that
// comes from outside input (a descriptor, a .vmx) against escaping its datastore.
Status CheckInside(const std::string& root, const std::string& path);
std::string DirName(const std::string& path);   // "a/b/c" -> "a/b"; "c" -> "."
std::string BaseName(const std::string& path);  // "a/b/c" -> "c"
// `name` as seen from the folder `dir`: absolute names stay as they are.
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace vmbackup::io
