#include "files/entries.h"

#include "base/strings.h"

namespace vmbackup::files {

bool SafeName(std::string_view n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string_view::npos &&
         n.find('\0') == std::string_view::npos;
}

std::string NormalizeFsPath(const std::string& path) {
  std::string out = "/";
  for (const auto& part : Split(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (out.size() > 1) out += '/';
    out += part;
  }
  return out;
}

std::string JoinFsPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

}  // namespace vmbackup::files
