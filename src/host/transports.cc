#include "host/transports.h"

#include <unistd.h>

#include <cstdlib>

#include "io/posix_file.h"

namespace vmbackup::host {

std::string_view TransportName(TransportMode m) {
  switch (m) {
    case TransportMode::kFile: return "file";
    case TransportMode::kHotAdd: return "hotadd";
    case TransportMode::kNbdSsl: return "nbdssl";
    case TransportMode::kNbd: return "nbd";
  }
  return "?";
}

Result<TransportMode> ParseTransport(std::string_view t) {
  for (TransportMode m : {TransportMode::kFile, TransportMode::kHotAdd, TransportMode::kNbdSsl,
                          TransportMode::kNbd}) {
    if (TransportName(m) == t) return m;
  }
  if (t == "san") return TransportMode::kFile;  // vmhost's direct file access is its SAN mode
  return InvalidArgumentError("unknown transport '" + std::string(t) +
                              "': expected san (file), hotadd, nbdssl or nbd");
}

std::string FindInPath(const std::string& cmd) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (true) {
    size_t end = p.find(':', start);
    std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string full = io::JoinPath(dir.empty() ? "." : dir, cmd);
    if (::access(full.c_str(), X_OK) == 0) return full;
    if (end == std::string::npos) return "";
    start = end + 1;
  }
}

Status CheckTransport(TransportMode mode, const std::string& nbdkit_plugin) {
  switch (mode) {
    case TransportMode::kFile: return Status::Ok();
    case TransportMode::kHotAdd:
      return UnavailableError(
          "vmhost runs no VMs that could attach a disk: hotadd needs the backup proxy to be a VM "
          "on "
          "this host");
    case TransportMode::kNbd:
    case TransportMode::kNbdSsl:
      if (FindInPath("nbdkit").empty()) return UnavailableError("nbdkit is not installed");
      if (!io::PathExists(nbdkit_plugin)) {
        return UnavailableError("the nbdkit plugin " + nbdkit_plugin + " is missing");
      }
      return Status::Ok();
  }
  return InternalError("unknown transport");
}

}  // namespace vmbackup::host
