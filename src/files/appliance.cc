#include "files/appliance.h"

#include <cstdlib>
#include <fstream>

#include "base/lazy_library.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(guestfs)

namespace vmbackup::files {
namespace {

// KVM that cannot boot Linux (no hardware virtualization: a paravirtual /dev/kvm) makes the
// appliance hang; TCG works everywhere.
bool HardwareVirtualization() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    return line.find(" vmx") != std::string::npos || line.find(" svm") != std::string::npos;
  }
  return false;
}

}  // namespace

Appliance::~Appliance() {
  if (g) {
    guestfs_shutdown(g);
    guestfs_close(g);
  }
}

Status Appliance::Error(const std::string& what) const {
  const char* e = guestfs_last_error(g);
  return IOError(what + ": " + (e && *e ? e : "libguestfs failed"));
}

StringList::~StringList() {
  if (!v) return;
  for (char** p = v; *p; ++p) std::free(*p);
  std::free(v);
}

Result<std::unique_ptr<Appliance>> LaunchAppliance(const std::vector<std::string>& sockets) {
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::guestfs));
  auto a = std::make_unique<Appliance>();
  a->g = guestfs_create();
  if (!a->g) return UnavailableError("libguestfs: cannot create a handle");
  guestfs_set_error_handler(a->g, nullptr, nullptr);  // errors come back as Status
  if (!HardwareVirtualization() && !std::getenv("LIBGUESTFS_BACKEND_SETTINGS")) {
    char* settings[] = {const_cast<char*>("force_tcg"), nullptr};
    guestfs_set_backend_settings(a->g, settings);
  }
  for (const auto& socket : sockets) {
    const std::string server = "unix:" + socket;
    const char* servers[] = {server.c_str(), nullptr};
    if (guestfs_add_drive_opts(a->g, "", GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw",
                               GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, GUESTFS_ADD_DRIVE_OPTS_PROTOCOL,
                               "nbd", GUESTFS_ADD_DRIVE_OPTS_SERVER, servers, -1) != 0) {
      return a->Error("libguestfs: add the disk at " + socket);
    }
  }
  if (guestfs_launch(a->g) != 0) return a->Error("libguestfs: start the appliance");
  return a;
}

}  // namespace vmbackup::files
