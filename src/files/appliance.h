// libguestfs's appliance (a small Linux VM under QEMU) over NBD exports of a point's disks, for
// the file systems the host should not or cannot read itself. Every disk is added read-only:
// libguestfs puts a throwaway overlay in front, so whatever the appliance's kernel writes (a
// journal replay, a checker's repair) never reaches the export. The disks appear in the
// appliance as /dev/sda, /dev/sdb, ... in the order given. Under TCG it takes tens of seconds
// to start: start one per command.
#pragma once

#include <guestfs.h>

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::files {

struct Appliance {
  guestfs_h* g = nullptr;
  ~Appliance();  // shuts it down
  // "WHAT: libguestfs's last error".
  Status Error(const std::string& what) const;
};

// Starts an appliance over the NBD exports on these unix sockets. On a host whose KVM cannot
// run it (no vmx/svm CPU flag) it uses TCG.
Result<std::unique_ptr<Appliance>> LaunchAppliance(const std::vector<std::string>& sockets);

// A list of strings libguestfs returned (NULL-terminated, each and the array malloc'ed).
struct StringList {
  char** v = nullptr;
  ~StringList();
};

}  // namespace vmbackup::files
