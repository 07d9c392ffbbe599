// A restore point's disk mounted for a user (`vmbackup mount` / `vmbackup umount`), without the
// kernel's nbd driver: the point's export (nbdkit, our plugin) -> a qemu-storage-daemon FUSE
// export onto DIR/disk.raw (read-only) -> a read-only loop device with partition nodes (partx)
// -> each file system mounted read-only under DIR/partN (ext4 without journal replay, XFS
// without log recovery, NTFS through ntfs-3g). What the kernel cannot mount (vfat where the
// kernel has no vfat) is reported and left out.
//
// Everything that outlives the command is recorded in DIR/.vmbackup-mount/state.json as soon as
// it exists, so Unmount finds and removes all of it even after the mounting command was killed
// halfway. Loop devices and mounts need root; without it only DIR/disk.raw is offered.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "live/server_process.h"

namespace vmbackup::live {

struct PartitionMount {
  int number = 0;       // 0: a file system on the whole disk
  std::string device;   // /dev/loopNpM
  std::string fs_type;  // as blkid says
  std::string dir;      // where it is mounted; "" when it is not
  std::string why_not;  // why it is not mounted
};

struct MountReport {
  std::string disk_file;  // DIR/disk.raw: the whole disk, read-only
  std::string loop;       // /dev/loopN, "" without root
  std::vector<PartitionMount> partitions;
};

// `exp` names the point and disk; its socket, pid file and `detach` are set here (the servers
// outlive the command). `dir` must be an empty folder.
Result<MountReport> MountPoint(ExportOptions exp, const std::string& dir);
// Tears down what MountPoint recorded under `dir`, in reverse order; a step that is gone
// already is skipped. Fails, keeping the record, when something stays busy.
Status UnmountPoint(const std::string& dir);

}  // namespace vmbackup::live
