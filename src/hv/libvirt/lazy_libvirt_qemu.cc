// libvirt's QEMU-specific calls: the guest agent's and the monitor's commands.
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)           \
  X(virDomainQemuAgentCommand) \
  X(virDomainQemuMonitorCommand)
VMBACKUP_LAZY_LIBRARY(libvirt_qemu, "libvirt-qemu.so.0", "libvirt0", FUNCTIONS)
