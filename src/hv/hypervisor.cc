#include "hv/hypervisor.h"

#include <set>

namespace vmbackup::hv {

std::string_view ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kCrash: return "crash";
    case Consistency::kFileSystem: return "filesystem";
    case Consistency::kApplication: return "application";
  }
  return "?";
}

std::string_view TransportName(TransportMode m) {
  switch (m) {
    case TransportMode::kSan: return "san";
    case TransportMode::kHotAdd: return "hotadd";
    case TransportMode::kNbdSsl: return "nbdssl";
    case TransportMode::kNbd: return "nbd";
    case TransportMode::kHttps: return "https";
  }
  return "?";
}

Result<std::vector<TransportMode>> ParseTransportList(std::string_view text) {
  std::vector<TransportMode> out;
  std::set<TransportMode> seen;
  size_t start = 0;
  while (start <= text.size()) {
    size_t colon = text.find(':', start);
    std::string_view part = text.substr(
        start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    bool found = false;
    for (TransportMode m : {TransportMode::kSan, TransportMode::kHotAdd, TransportMode::kNbdSsl,
                            TransportMode::kNbd, TransportMode::kHttps}) {
      if (part == TransportName(m)) {
        if (!seen.insert(m).second) {
          return InvalidArgumentError("transport '" + std::string(part) + "' is listed twice");
        }
        out.push_back(m);
        found = true;
      }
    }
    if (!found) {
      return InvalidArgumentError("unknown transport '" + std::string(part) +
                                  "' (san, hotadd, nbdssl, nbd, https; separated by ':')");
    }
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return out;
}

}  // namespace vmbackup::hv
