#include "cli/partial_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <vector>

#include "base/process.h"
#include "io/posix_file.h"

namespace vmbackup::cli {
namespace {

constexpr std::string_view kPrefix = ".vmbackup-partial.";
constexpr std::string_view kHelperPrefix = ".helper.";

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

void RemoveTree(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

}  // namespace

Result<PartialFile> PartialFile::Start(const std::string& final_path) {
  if (io::PathExists(final_path)) return AlreadyExistsError(final_path + " exists");
  const std::string dir = io::DirName(final_path);
  for (const std::string& n : ListNames(dir)) {
    if (n.compare(0, kPrefix.size(), kPrefix) == 0 &&
        !FileTagOwnerAlive(std::string_view(n).substr(kPrefix.size())))
      RemoveTree(io::JoinPath(dir, n));
  }
  std::string temp =
      io::JoinPath(dir, std::string(kPrefix) + OwnerFileTag() + "." + io::BaseName(final_path));
  RemoveTree(temp);  // this process's own, from an earlier failed attempt
  if (::mkdir(temp.c_str(), 0700) != 0) return PosixError("create " + temp, errno);
  return PartialFile(final_path, temp);
}

PartialFile::PartialFile(PartialFile&& o) noexcept
    : final_(std::move(o.final_)), temp_dir_(std::move(o.temp_dir_)) {
  o.temp_dir_.clear();
}

std::string PartialFile::path() const { return io::JoinPath(temp_dir_, io::BaseName(final_)); }

std::string PartialFile::Helper(const std::string& role) const {
  return io::JoinPath(temp_dir_, std::string(kHelperPrefix) + role);
}

Status PartialFile::Commit() {
  const std::string dir = io::DirName(final_), main = io::BaseName(final_);
  std::vector<std::string> names;
  for (const std::string& n : ListNames(temp_dir_)) {
    if (n != main && n.compare(0, kHelperPrefix.size(), kHelperPrefix) != 0) names.push_back(n);
  }
  names.push_back(main);  // last: until it is in place, what it names is not a disk
  for (const std::string& n : names) {
    const std::string from = io::JoinPath(temp_dir_, n), to = io::JoinPath(dir, n);
    // RENAME_NOREPLACE: a file that appeared meanwhile under a final name is never replaced.
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0)
      return PosixError("move " + from + " to " + to, errno);
  }
  return Status::Ok();
}

PartialFile::~PartialFile() {
  if (!temp_dir_.empty()) RemoveTree(temp_dir_);
}

}  // namespace vmbackup::cli
