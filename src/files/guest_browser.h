// GuestBrowser: file-level restore of the file systems libtsk cannot read (XFS, btrfs, LVM and
// the rest) through libguestfs: its appliance (a small Linux VM under QEMU) reads the point's
// disk from an NBD export, read-only (libguestfs puts a throwaway overlay in front, so nothing,
// not even a journal replay, reaches the backup). One appliance per browser: start it once per
// command, not per file. Under TCG it takes tens of seconds to start.
//
// Extract builds everything in a private folder inside the target folder and moves the result
// into place with RENAME_NOREPLACE: nothing is overwritten, nothing is written through a link.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "files/entries.h"

namespace vmbackup::files {

struct Appliance;

class GuestBrowser {
 public:
  // Launches the appliance over the NBD export at unix socket `socket`. On a host whose KVM
  // cannot run it (no vmx/svm CPU flag) it uses TCG.
  static Result<std::unique_ptr<GuestBrowser>> Launch(const std::string& socket);
  ~GuestBrowser();  // shuts the appliance down
  GuestBrowser(const GuestBrowser&) = delete;
  GuestBrowser& operator=(const GuestBrowser&) = delete;

  // The file system type of partition `number` (0: the whole disk), as the appliance sees it.
  Result<std::string> FsType(int number);
  Result<std::vector<Entry>> List(int number, const std::string& path, bool recursive);
  Result<ExtractStats> Extract(int number, const std::string& path, const std::string& to_dir);

 private:
  explicit GuestBrowser(std::unique_ptr<Appliance> h);
  Status Mount(int number);
  // One entry of the mounted file system (`number` must be mounted).
  Result<Entry> Stat(int number, const std::string& path);
  std::unique_ptr<Appliance> h_;
  int mounted_ = -1;
};

}  // namespace vmbackup::files
