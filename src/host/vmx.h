// The parts of a VM's .vmx that vmhost uses: identity, power state, CBT switches, quiesce
// hooks, and the virtual disks with the descriptor each one currently writes (its leaf).
// Everything else in the file is kept as it is.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "host/config_file.h"

namespace vmbackup::host {

struct VmxDisk {
  std::string node;       // "scsi0:0"
  int device_key = 0;     // 2000 + 16 * controller + unit for SCSI, as vSphere numbers them
  std::string file_name;  // the current leaf descriptor, relative to the VM folder
};

class Vmx {
 public:
  static Result<Vmx> Parse(std::string_view text);
  // A new VM's configuration with `disk_count` disks named `<name>.vmdk`, `<name>_1.vmdk`, ...
  static Vmx New(const std::string& name, size_t disk_count, bool cbt);
  std::string Serialize() const { return cf_.Serialize(); }

  std::string display_name() const { return cf_.GetOr("displayName", ""); }
  std::string uuid() const { return cf_.GetOr("uuid.bios", ""); }
  bool powered_on() const { return cf_.GetOr("vmhost.powerState", "off") == "on"; }
  void set_powered_on(bool on) { cf_.Set("vmhost.powerState", on ? "on" : "off"); }
  // Why the VM may not be powered on (an unfinished restore left its disks mixed); empty: it
  // may. vSphere's equivalent is AuthorizationManager.DisableMethods on PowerOnVM_Task.
  std::string power_on_block() const { return cf_.GetOr("vmhost.powerOnBlocked", ""); }
  void set_power_on_block(const std::string& why) {
    if (why.empty()) {
      cf_.RemovePrefix("vmhost.powerOnBlocked");
    } else {
      cf_.Set("vmhost.powerOnBlocked", why);
    }
  }
  bool cbt_enabled() const { return cf_.GetBool("ctkEnabled"); }
  void set_cbt_enabled(bool on);
  std::string freeze_hook() const { return cf_.GetOr("vmhost.freezeHook", ""); }
  std::string thaw_hook() const { return cf_.GetOr("vmhost.thawHook", ""); }
  uint64_t cbt_granularity() const;  // vmhost.cbtGranularity, default 64 KiB
  size_t cbt_max_areas() const;      // vmhost.cbtMaxAreas, default 64 areas per answer

  // Present hard disks, ordered by controller and unit. Errors name the bad key.
  Result<std::vector<VmxDisk>> Disks() const;
  void SetDiskFile(const std::string& node, const std::string& file_name);

  ConfigFile& config() { return cf_; }
  const ConfigFile& config() const { return cf_; }

 private:
  ConfigFile cf_;
};

}  // namespace vmbackup::host
