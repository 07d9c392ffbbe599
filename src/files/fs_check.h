// Read-only checks of every file system on a point's disks, inside libguestfs's appliance
// (files/appliance.h): the host never parses the guest's file systems, and what a checker
// repairs lands in the appliance's throwaway overlay, never in the export or the repository.
//
// The checkers, and what "ok" means for each:
//   ext2/3/4  mounted once (the journal replays, orphans go, as at boot), then a forced
//             e2fsck -p: anything it finds fails, repaired or not (a directory entry whose
//             inode is gone is a lost file, though e2fsck -p "repairs" it by itself);
//   xfs       the file system is mounted once (the log replays, as at boot), then
//             xfs_repair -n: any corruption fails;
//   vfat      fsck.vfat -a: what it repairs by itself passes (FAT has no journal: a volume
//             backed up while mounted carries its dirty flag, which is not damage);
//   ntfs, btrfs  the volume must mount and list its root (Linux has no NTFS checker, Debian's
//             libguestfs offers no btrfs check).
// Swap and areas with no file system are listed, not checked.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::files {

struct FsCheck {
  std::string device;  // in the appliance: /dev/sda1, /dev/sdb, /dev/vg/root
  int drive = -1;      // the index of the disk it is on (sockets' order); -1 for a logical volume
  std::string type;    // ext4, xfs, vfat, ntfs, btrfs, swap, unknown, ...
  bool checked = false;
  bool ok = true;
  std::string checker;  // "e2fsck -f -p"
  std::string detail;   // the checker's complaint when it failed
  double seconds = 0;
};

struct FsCheckReport {
  std::vector<FsCheck> checks;
  double appliance_seconds = 0;  // starting the appliance
};

// Checks every file system on the disks exported at these unix sockets (one appliance for all,
// so volume groups that span disks are found).
Result<FsCheckReport> CheckFileSystems(const std::vector<std::string>& sockets);

}  // namespace vmbackup::files
