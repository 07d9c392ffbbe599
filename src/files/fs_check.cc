#include "files/fs_check.h"

#include <chrono>
#include <cstdlib>

#include "base/strings.h"
#include "files/appliance.h"

namespace vmbackup::files {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// "/dev/sdb2" -> 1; logical volumes and the rest -> -1.
int DriveOf(const std::string& device) {
  if (device.rfind("/dev/sd", 0) != 0 || device.size() < 8) return -1;
  const char c = device[7];
  return c >= 'a' && c <= 'z' ? c - 'a' : -1;
}

// Runs the checker of `c.type` on `c.device`; fills checker, checked, ok and detail.
void RunChecker(Appliance& a, FsCheck& c) {
  guestfs_h* g = a.g;
  const char* dev = c.device.c_str();
  auto failed = [&](const std::string& what) {
    c.ok = false;
    const char* e = guestfs_last_error(g);
    c.detail = what + (e && *e ? ": " + LastLines(e, 6, "; ") : "");
  };
  c.checked = true;
  if (c.type == "ext2" || c.type == "ext3" || c.type == "ext4") {
    // Mounted once, as the guest's boot would: the journal replays and orphans go. Then e2fsck
    // -p forced (a mount count past the maximum; libguestfs's fsck call gives the exit status,
    // its e2fsck call only pass or fail): a consistent file system exits 0. Exit 1 means it
    // repaired something, such as a directory entry whose inode is gone: a file the guest has
    // lost, which e2fsck -p would "repair" silently.
    c.checker = "mount (journal replay), e2fsck -f -p";
    if (guestfs_mount(g, dev, "/") != 0) return failed("the file system does not mount");
    guestfs_umount_all(g);
    if (guestfs_tune2fs(g, dev, GUESTFS_TUNE2FS_MAXMOUNTCOUNT, 1, GUESTFS_TUNE2FS_MOUNTCOUNT, 2,
                        -1) != 0)
      return failed("tune2fs failed");
    const int r = guestfs_fsck(g, c.type.c_str(), dev);
    if (r < 0) return failed("e2fsck failed");
    if (r != 0) {
      c.ok = false;
      c.detail = (r & 4) ? StrFormat("e2fsck found damage it cannot repair by itself (exit %d)", r)
                         : StrFormat(
                               "e2fsck found and repaired inconsistencies (exit %d): "
                               "the file system in the point is damaged",
                               r);
    }
  } else if (c.type == "xfs") {
    c.checker = "mount (log replay), xfs_repair -n";
    if (guestfs_mount(g, dev, "/") != 0) return failed("the file system does not mount");
    guestfs_umount_all(g);
    const int r = guestfs_xfs_repair(g, dev, GUESTFS_XFS_REPAIR_NOMODIFY, 1, -1);
    if (r < 0) return failed("xfs_repair -n failed");
    if (r != 0) {
      c.ok = false;
      c.detail = "xfs_repair -n found corruption";
    }
  } else if (c.type == "vfat" || c.type == "msdos") {
    c.checker = "fsck.vfat -a";
    const int r = guestfs_fsck(g, "vfat", dev);
    if (r < 0) return failed("fsck.vfat failed");
    if (r & ~1) {  // 1: repaired by itself; more: left uncorrected, or the check failed
      c.ok = false;
      c.detail = StrFormat("fsck.vfat -a ended with status %d", r);
    }
  } else if (c.type == "ntfs" || c.type == "btrfs") {
    // Linux has no NTFS checker, and Debian's libguestfs none for btrfs.
    c.checker = "mount read-only and list the root";
    if (guestfs_mount_ro(g, dev, "/") != 0) return failed("the volume does not mount");
    StringList root;
    root.v = guestfs_ls(g, "/");
    if (!root.v) failed("its root folder cannot be listed");
    guestfs_umount_all(g);
  } else {
    c.checked = false;  // swap, unknown, a volume group's member: nothing to check
    c.checker = "none";
  }
}

}  // namespace

Result<FsCheckReport> CheckFileSystems(const std::vector<std::string>& sockets) {
  FsCheckReport report;
  auto t = Clock::now();
  VMBACKUP_ASSIGN_OR_RETURN(auto a, LaunchAppliance(sockets));
  report.appliance_seconds = Since(t);
  StringList fs;
  fs.v = guestfs_list_filesystems(a->g);  // pairs: device, type
  if (!fs.v) return a->Error("list the file systems");
  for (char** p = fs.v; p[0] && p[1]; p += 2) {
    FsCheck c;
    c.device = p[0];
    c.type = p[1];
    c.drive = DriveOf(c.device);
    t = Clock::now();
    RunChecker(*a, c);
    c.seconds = Since(t);
    report.checks.push_back(std::move(c));
  }
  return report;
}

}  // namespace vmbackup::files
