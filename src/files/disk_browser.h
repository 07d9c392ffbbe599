// DiskBrowser: file-level restore without restoring the disk. The Sleuth Kit (libtsk) runs in
// this process over a reader of the disk (a restore point's, through live::SharedPointDisk):
// partition tables (GPT, MBR), then FAT, ext2/3/4, NTFS, HFS+, ISO9660 and the other file
// systems TSK reads. No VM, no mount, no root. TSK does not replay journals: a crash-consistent
// point shows the file system as its last checkpoint had it.
//
// Everything read from the disk is outside input: a name that is ".", "..", empty or holds a
// '/' is refused, and Extract writes only below its target folder, never through a link and
// never over an existing file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "files/entries.h"

namespace vmbackup::files {

class DiskBrowser {
 public:
  using ReadFn = std::function<Status(uint64_t offset, std::span<uint8_t> buf)>;
  // Reads the partition table (or a file system on the whole disk) and tries a file system on
  // each partition. Not thread-safe; `read` is called from the calling thread only.
  static Result<std::unique_ptr<DiskBrowser>> Open(uint64_t size, ReadFn read);
  ~DiskBrowser();
  DiskBrowser(const DiskBrowser&) = delete;
  DiskBrowser& operator=(const DiskBrowser&) = delete;

  const std::vector<Volume>& volumes() const { return volumes_; }
  const std::string& table_type() const { return table_; }  // "GPT", "DOS", ... or ""
  // The volume to use: `number`, or with -1 the only one with a readable file system.
  Result<const Volume*> Pick(int number) const;
  // The entries of folder `path` (its own entry first when it is a file), or of the whole
  // subtree with `recursive`. File-system metadata files (NTFS $MFT, FAT's virtual files) and
  // deleted names are left out.
  Result<std::vector<Entry>> List(int volume, const std::string& path, bool recursive);
  // Copies the file, link or folder (with everything below it) at `path` into `to_dir` under
  // its own name, with modification and access times and permission bits.
  Result<ExtractStats> Extract(int volume, const std::string& path, const std::string& to_dir);

  struct Impl;  // TSK's handles (defined in the .cc)

 private:
  explicit DiskBrowser(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<Volume> volumes_;
  std::string table_;
};

}  // namespace vmbackup::files
