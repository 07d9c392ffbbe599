// The .vmx of a VM restored as a new VM on vSphere: the saved configuration of the point with
// a new name, a new BIOS uuid, new MAC addresses (generated ones dropped), no change tracking,
// no power state or run-time files of the old VM, and its disks renamed after the new VM.
// Values that are paths leaving the VM folder (absolute, or with "..") are dropped, so a saved
// configuration cannot make the new VM use another VM's files.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmbackup::hv::vsphere {

struct NewVmConfig {
  std::string vmx;                      // the file's text
  std::vector<std::string> disk_files;  // "NAME.vmdk", "NAME_1.vmdk", ... in disk order
};

// `saved` may be empty (a point without configuration): a minimal VM with `disk_count` SCSI
// disks is made. kInvalidArgument when the saved configuration's disks are not `disk_count`.
Result<NewVmConfig> MakeNewVmConfig(std::string_view saved, const std::string& name,
                                    size_t disk_count, const std::string& power_on_block);

}  // namespace vmbackup::hv::vsphere
