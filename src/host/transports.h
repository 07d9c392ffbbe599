// Transport modes of the embedded host (SYSTEM.md section 1.6), and whether each can open a
// disk here. `file` is direct access to the VMDK chain (the SAN-style mode: host::Vm::OpenDisk,
// host::SharedDisk); `nbd`/`nbdssl` are NBD exports served by nbdkit with the vmhost plugin;
// `hotadd` needs a proxy VM on the host and is never available on vmhost.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmbackup::host {

enum class TransportMode { kFile, kHotAdd, kNbdSsl, kNbd };
std::string_view TransportName(TransportMode m);  // "file", "hotadd", "nbdssl", "nbd"
Result<TransportMode> ParseTransport(std::string_view text);

// Ok, or kUnavailable with the reason. `nbdkit_plugin` is the path of nbdkit-vmhost-plugin.so.
Status CheckTransport(TransportMode mode, const std::string& nbdkit_plugin);

// The path of `cmd` on $PATH, or "" when it is not there.
std::string FindInPath(const std::string& cmd);

}  // namespace vmbackup::host
