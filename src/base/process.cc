#include "base/process.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>

#include "base/strings.h"

namespace vmbackup {

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

uint64_t ProcessStart(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22 && (fields >> field); ++i) {
    if (i == 22) {
      auto v = ParseUint(field);
      return v ? *v : 0;
    }
  }
  return 0;
}

// Field 3 of /proc/PID/stat: 'Z' for a zombie (dead, not yet reaped: where PID 1 does not
// reap orphans, a killed daemon stays one), 0 when unknown.
char ProcessState(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : 0;
}

bool ProcessAlive(int64_t pid, uint64_t start) {
  if (pid <= 0) return false;
  if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
  if (ProcessState(pid) == 'Z') return false;
  uint64_t now_start = ProcessStart(pid);
  return now_start == 0 || start == 0 || now_start == start;
}

std::string OwnerTag() {
  const int64_t pid = ::getpid();
  return HostName() + ":" + std::to_string(pid) + ":" + std::to_string(ProcessStart(pid));
}

bool OwnerAlive(const std::string& tag) {
  size_t a = tag.rfind(':');
  if (a == std::string::npos || a == 0) return true;
  size_t b = tag.rfind(':', a - 1);
  if (b == std::string::npos) return true;
  if (tag.substr(0, b) != HostName()) return true;
  auto pid = ParseUint(tag.substr(b + 1, a - b - 1));
  auto start = ParseUint(tag.substr(a + 1));
  if (!pid || !start) return true;
  return ProcessAlive(int64_t(*pid), *start);
}

}  // namespace vmbackup

namespace vmbackup {
namespace {

std::string HostHash() {
  const std::string h = HostName();
  uint32_t x = 2166136261u;  // FNV-1a: a short tag, not a secret
  for (char c : h) x = (x ^ uint8_t(c)) * 16777619u;
  return StrFormat("%08x", x);
}

}  // namespace

std::string OwnerFileTag() {
  const int64_t pid = ::getpid();
  return StrFormat("%s-%lld-%llu", HostHash().c_str(), (long long)pid,
                   (unsigned long long)ProcessStart(pid));
}

bool FileTagOwnerAlive(std::string_view name) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : name) {
    if (c == '-' || c == '.') {
      parts.push_back(cur);
      cur.clear();
      if (parts.size() == 3) break;
    } else {
      cur += c;
    }
  }
  if (parts.size() < 3) parts.push_back(cur);
  if (parts.size() < 3 || parts[0] != HostHash()) return true;
  auto pid = ParseUint(parts[1]);
  auto start = ParseUint(parts[2]);
  if (!pid || !start) return true;
  return ProcessAlive(int64_t(*pid), *start);
}

}  // namespace vmbackup
