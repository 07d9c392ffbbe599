// TempDir: a private temporary folder (mode 0700, under $TMPDIR or /tmp), removed with the
// files in it when the owner goes. For files staged on the way to a remote host.
#pragma once

#include <string>

#include "base/result.h"

namespace vmbackup::io {

class TempDir {
 public:
  // A new folder named PREFIX-XXXXXX.
  static Result<TempDir> Make(const std::string& prefix);
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  // Removes the files directly in the folder, then the folder (nothing deeper is made here).
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

}  // namespace vmbackup::io
