// What file-level restore reports: volumes (partitions), entries of a file system, and what an
// extraction wrote. Shared by the in-process reader (DiskBrowser, libtsk) and the appliance
// (GuestBrowser, libguestfs).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vmbackup::files {

struct Volume {
  // As Linux numbers it (/dev/sdaN): GPT entry index + 1; MBR primary slot + 1, logical
  // partitions from 5; 0: a file system on the whole disk.
  int number = 0;
  uint64_t offset = 0, length = 0;
  std::string description;  // the partition's type or name as the table gives it
  std::string fs_type;      // "ext4", "fat16", "ntfs", ...; "" when TSK cannot read it
};

struct Entry {
  std::string path;  // absolute inside the file system: "/home/alice/report.txt"
  char type = '-';   // '-' file, 'd' folder, 'l' link, 'o' other (device, fifo, socket)
  uint64_t size = 0;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0, atime = 0;  // seconds since 1970 UTC
  uint32_t mtime_nsec = 0, atime_nsec = 0;
  std::string link;  // a link's target
};

struct ExtractStats {
  uint64_t files = 0, folders = 0, links = 0, bytes = 0, skipped = 0;
};

// A name from a file system that can be a path component here: not empty, ".", ".." and
// without '/' or NUL (file systems are outside input).
bool SafeName(std::string_view name);
// A path inside a file system as the user gave it, made absolute and plain: "a//b/./" -> "/a/b".
// ".." stays a name: the readers look it up as such, they never resolve it.
std::string NormalizeFsPath(const std::string& path);
// "/" + "x" -> "/x"; "/a" + "x" -> "/a/x".
std::string JoinFsPath(const std::string& dir, const std::string& name);

}  // namespace vmbackup::files
