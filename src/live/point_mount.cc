#include "live/point_mount.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/process.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "io/posix_file.h"

namespace vmbackup::live {
namespace {

constexpr const char* kStateDir = ".vmbackup-mount";

std::string StatePath(const std::string& dir) { return dir + "/" + kStateDir + "/state.json"; }

Status SaveState(const std::string& dir, const nlohmann::json& state) {
  return io::WriteFileAtomic(StatePath(dir), state.dump(2) + "\n");
}

// /proc/self/mountinfo escapes blanks and backslashes in paths as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += char(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto f = Split(line, ' ');
    if (f.size() > 4 && Unescape(f[4]) == path) return true;
  }
  return false;
}

std::string FirstLine(const std::string& text) {
  for (const auto& line : Split(text, '\n')) {
    std::string_view t = Trim(line);
    if (!t.empty()) return std::string(t);
  }
  return "";
}

std::string LastLine(const std::string& text) {
  std::string s = text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Mounts `dev` read-only at `dir` the way its file system needs; the reason when it cannot.
std::string MountReadOnly(const std::string& dev, const std::string& fs, const std::string& dir,
                          bool* fuse) {
  std::vector<std::string> argv;
  *fuse = false;
  if (fs == "ext2" || fs == "ext3" || fs == "ext4") {
    argv = {"mount", "-t", fs, "-o", "ro,noload", dev, dir};  // no journal replay
  } else if (fs == "xfs") {
    argv = {"mount", "-t", "xfs", "-o", "ro,norecovery", dev, dir};  // no log recovery
  } else if (fs == "ntfs") {
    argv = {"ntfs-3g", "-o", "ro", dev, dir};
    *fuse = true;
  } else if (fs.empty()) {
    return "no file system found";
  } else if (fs == "swap" || fs == "LVM2_member" || fs == "crypto_LUKS") {
    return fs + " is not a file system to mount";
  } else {
    argv = {"mount", "-t", fs, "-o", "ro", dev, dir};
  }
  auto r = RunCommand(argv, 60);
  if (!r) return r.error().message();
  if (r->exit_code != 0) return FirstLine(r->err.empty() ? r->out : r->err);
  return "";
}

Result<std::vector<int>> PartitionNumbers(const std::string& loop) {
  auto r = RunCommand({"partx", "-g", "-o", "NR", loop}, 30);
  if (!r) return r.error();
  std::vector<int> out;
  if (r->exit_code != 0) return out;  // no partition table
  for (const auto& line : Split(r->out, '\n')) {
    auto n = ParseUint(Trim(line));
    if (n && *n > 0 && *n < 256) out.push_back(int(*n));
  }
  return out;
}

}  // namespace

// The folder as an absolute path without links: /proc/self/mountinfo names mounts that way.
Result<std::string> RealDir(const std::string& dir) {
  char* real = ::realpath(dir.c_str(), nullptr);
  if (!real) return PosixError(dir, errno);
  std::string out = real;
  std::free(real);
  return out;
}

namespace {
Result<MountReport> MountSteps(ExportOptions exp, const std::string& dir);
}  // namespace

Result<MountReport> MountPoint(ExportOptions exp, const std::string& given_dir) {
  VMBACKUP_ASSIGN_OR_RETURN(const std::string dir, RealDir(given_dir));
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return InvalidArgumentError(dir + " is not a folder");
  if (!std::filesystem::is_empty(dir))
    return InvalidArgumentError(dir + " is not empty: mount into an empty folder");
  const std::string state_dir = dir + "/" + kStateDir;
  exp.socket = state_dir + "/point.sock";
  if (exp.socket.size() > 100)
    return InvalidArgumentError(dir + ": the path is too long for a unix socket inside it");
  if (::mkdir(state_dir.c_str(), 0700) != 0) return PosixError("create " + state_dir, errno);
  auto report = MountSteps(std::move(exp), dir);
  if (!report) {
    // What was set up before the failure goes again (it is all in the state file).
    UnmountPoint(dir).IgnoreError();  // the mount's own error says more
  }
  return report;
}

namespace {

Result<MountReport> MountSteps(ExportOptions exp, const std::string& dir) {
  const std::string state_dir = dir + "/" + kStateDir;
  nlohmann::json state = {
      {"point", exp.point_id}, {"disk", exp.disk_key}, {"mounts", nlohmann::json::array()}};
  VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));

  exp.pidfile = state_dir + "/nbdkit.pid";
  exp.log_file = state_dir + "/nbdkit.log";
  exp.detach = true;
  VMBACKUP_ASSIGN_OR_RETURN(auto nbdkit, StartExport(exp));
  const pid_t nbdkit_pid = nbdkit->Release();
  state["nbdkit"] = {{"pid", nbdkit_pid}, {"start", ProcessStart(nbdkit_pid)}};
  VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));

  MountReport report;
  report.disk_file = dir + "/disk.raw";
  VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(report.disk_file, ""));  // the FUSE mount point
  const nlohmann::json backing = NbdBackingNode(exp.socket);
  const nlohmann::json fuse = {{"type", "fuse"},
                               {"id", "disk"},
                               {"node-name", "point"},
                               {"mountpoint", report.disk_file},
                               {"writable", false}};
  SpawnOptions so;
  so.argv = {"qemu-storage-daemon", "--blockdev", backing.dump(),        "--export",
             fuse.dump(),           "--pidfile",  state_dir + "/qsd.pid"};
  so.pidfile = state_dir + "/qsd.pid";
  so.log_file = state_dir + "/qsd.log";
  so.detach = true;
  VMBACKUP_ASSIGN_OR_RETURN(auto qsd, ServerProcess::Start(so));
  const pid_t qsd_pid = qsd->Release();
  state["qsd"] = {{"pid", qsd_pid}, {"start", ProcessStart(qsd_pid)}};
  VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));

  if (::geteuid() != 0) return report;  // loop devices and mounts need root
  VMBACKUP_ASSIGN_OR_RETURN(std::string loop,
                            RunCommandOk({"losetup", "-r", "-f", "--show", report.disk_file}, 60));
  report.loop = std::string(Trim(loop));
  state["loop"] = report.loop;
  VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<int> numbers, PartitionNumbers(report.loop));
  std::vector<std::pair<int, std::string>> devices;
  if (numbers.empty()) {
    devices.emplace_back(0, report.loop);
  } else {
    // losetup -P makes no partition nodes on some kernels; partx -a does.
    auto r = RunCommand({"partx", "-a", report.loop}, 60);
    if (!r) return r.error();
    state["partx"] = true;
    VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
    for (int n : numbers) devices.emplace_back(n, StrFormat("%sp%d", report.loop.c_str(), n));
  }
  for (const auto& [n, dev] : devices) {
    PartitionMount pm;
    pm.number = n;
    pm.device = dev;
    for (int i = 0; i < 200 && !io::PathExists(dev); ++i)  // the node may come a moment later
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto type = RunCommand({"blkid", "-o", "value", "-s", "TYPE", dev}, 30);
    if (type && type->exit_code == 0) pm.fs_type = std::string(Trim(type->out));
    const std::string target = n == 0 ? dir + "/disk" : StrFormat("%s/part%d", dir.c_str(), n);
    if (::mkdir(target.c_str(), 0755) != 0) return PosixError("create " + target, errno);
    bool is_fuse = false;
    pm.why_not = MountReadOnly(dev, pm.fs_type, target, &is_fuse);
    if (pm.why_not.empty()) {
      pm.dir = target;
      state["mounts"].push_back({{"dir", target}, {"fuse", is_fuse}});
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
    } else {
      ::rmdir(target.c_str());
    }
    report.partitions.push_back(pm);
  }
  return report;
}

}  // namespace

Status UnmountPoint(const std::string& given_dir) {
  VMBACKUP_ASSIGN_OR_RETURN(const std::string dir, RealDir(given_dir));
  auto text = io::ReadSmallFile(StatePath(dir), 1 << 20);
  if (!text) return NotFoundError(dir + " is not a restore point mounted by vmbackup");
  auto state = nlohmann::json::parse(*text, nullptr, false);
  if (!state.is_object())
    return CorruptionError(StatePath(dir) + " is damaged: unmount by hand (umount, losetup -d)");
  // Reverse order: file systems, partition nodes, the loop device, the FUSE file, the servers.
  const auto mounts = state.value("mounts", nlohmann::json::array());
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    const std::string target = it->value("dir", "");
    if (target.rfind(dir + "/", 0) != 0) continue;  // only ever below `dir`
    if (IsMounted(target)) {
      auto r = RunCommand({"umount", target}, 60);
      if (!r) return r.error();
      if (r->exit_code != 0) {
        return UnavailableError(
            StrFormat("%s stays mounted (%s): close what uses it, then run "
                      "umount again",
                      target.c_str(), LastLine(r->err).c_str()));
      }
    }
    ::rmdir(target.c_str());
  }
  const std::string disk_file = dir + "/disk.raw";
  const std::string loop = state.value("loop", "");
  if (!loop.empty()) {
    // Only the loop device that still serves our file: a number can be reused.
    const std::string name = loop.substr(loop.rfind('/') + 1);
    auto backing = io::ReadSmallFile("/sys/block/" + name + "/loop/backing_file", 4096);
    if (backing && std::string(Trim(*backing)) == disk_file) {
      if (state.value("partx", false)) (void)RunCommand({"partx", "-d", loop}, 60);
      auto r = RunCommand({"losetup", "-d", loop}, 60);
      if (!r) return r.error();
      if (r->exit_code != 0) return UnavailableError(loop + " stays attached: " + LastLine(r->err));
    }
  }
  for (const char* server : {"qsd", "nbdkit"}) {
    if (!state.contains(server)) continue;
    const auto& s = state[server];
    StopDetached(pid_t(s.value("pid", 0)), s.value("start", uint64_t(0)));
  }
  if (IsMounted(disk_file)) {
    auto r = RunCommand({"umount", disk_file}, 60);
    if (!r || r->exit_code != 0) return UnavailableError(disk_file + " stays mounted");
  }
  ::unlink(disk_file.c_str());
  std::error_code ec;
  std::filesystem::remove_all(dir + "/" + kStateDir, ec);
  if (ec) return PosixError("remove " + dir + "/" + kStateDir, ec.value());
  return Status::Ok();
}

}  // namespace vmbackup::live
