#include "live/server_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/process.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "io/posix_file.h"
#include "location/location.h"

extern char** environ;

namespace vmbackup::live {
namespace {

// The last non-empty line of a log file, for an error message.
std::string LastLogLine(const std::string& path) {
  if (path.empty()) return "";
  auto text = io::ReadSmallFile(path, 1 << 20);
  if (!text) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

bool WaitGone(pid_t pid, bool child, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    if (child) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) return true;
    } else if (!ProcessAlive(pid, 0)) {  // gone, or a zombie nobody reaps
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Result<std::unique_ptr<ServerProcess>> ServerProcess::Start(const SpawnOptions& o) {
  if (o.argv.empty()) return InvalidArgumentError("no server program given");
  if (!o.pidfile.empty()) ::unlink(o.pidfile.c_str());
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string s = *e;
    bool replaced = false;
    for (const auto& add : o.env)
      if (s.substr(0, s.find('=') + 1) == add.substr(0, add.find('=') + 1)) replaced = true;
    if (!replaced) env_strings.push_back(s);
  }
  env_strings.insert(env_strings.end(), o.env.begin(), o.env.end());
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int log_fd = -1;
  if (!o.log_file.empty()) {
    log_fd = ::open(o.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) return PosixError("open " + o.log_file, errno);
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  // fork rather than posix_spawn: the child asks the kernel for SIGTERM when we die (a killed
  // vmbackup leaves no server behind), or leaves our session when it must outlive us. Between
  // fork and exec only async-signal-safe calls.
  const pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return PosixError("fork", errno);
  }
  if (pid == 0) {
    if (o.detach) {
      ::setsid();
    } else {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
    }
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  std::unique_ptr<ServerProcess> p(new ServerProcess(pid));
  if (!o.pidfile.empty()) p->AddCleanup(o.pidfile);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.start_seconds);
  bool forked_off = false;  // a daemonizing program's first process is done
  while (!o.pidfile.empty()) {
    auto text = io::ReadSmallFile(o.pidfile, 64);
    if (text && !text->empty() && text->back() == '\n') {
      if (o.daemonizes) {
        auto daemon = ParseUint(Trim(*text));
        if (!daemon || *daemon == 0) return UnavailableError(o.argv[0] + " wrote a bad pid file");
        if (!forked_off) ::waitpid(pid, nullptr, 0);  // its first process exits now
        p->pid_ = pid_t(*daemon);
        p->child_ = false;
      }
      break;
    }
    int status = 0;
    if (!forked_off && ::waitpid(pid, &status, WNOHANG) == pid) {
      if (o.daemonizes && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        forked_off = true;  // the daemon writes the pid file in a moment
        continue;
      }
      p->reaped_ = true;
      const std::string why = LastLogLine(o.log_file);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && why.empty())
        return UnavailableError("cannot run " + o.argv[0] + " (is it installed?)");
      return UnavailableError(StrFormat("%s exited (status %d) before serving%s%s",
                                        o.argv[0].c_str(), status, why.empty() ? "" : ": ",
                                        why.c_str()));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return UnavailableError(
          StrFormat("%s did not start serving within %d s", o.argv[0].c_str(), o.start_seconds));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return p;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Stop();
}

bool ServerProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  if (!child_) return ProcessAlive(pid_, 0);
  if (::waitpid(pid_, nullptr, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

bool ServerProcess::Stop() {
  bool was_running = false;
  if (pid_ > 0 && !child_) {
    was_running = StopDetached(pid_, 0);
  } else if (pid_ > 0 && !reaped_) {
    was_running = ::kill(pid_, SIGTERM) == 0;
    if (!WaitGone(pid_, true, 10)) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    reaped_ = true;
  }
  pid_ = 0;
  for (const auto& f : cleanup_) ::unlink(f.c_str());
  cleanup_.clear();
  return was_running;
}

pid_t ServerProcess::Release() {
  const pid_t pid = pid_;
  pid_ = 0;
  cleanup_.clear();
  return pid;
}

bool StopDetached(pid_t pid, uint64_t start, int grace_seconds) {
  if (pid <= 0 || !ProcessAlive(pid, start)) return false;
  ::kill(pid, SIGTERM);
  if (!WaitGone(pid, false, grace_seconds)) ::kill(pid, SIGKILL);
  WaitGone(pid, false, 5);
  return true;
}

Result<RunDir> RunDir::Make(const std::string& kind) {
  const std::string prefix = "vmbackup-" + kind + "-";
  if (DIR* d = ::opendir("/tmp")) {
    while (dirent* e = ::readdir(d)) {
      const std::string_view name = e->d_name;
      if (name.substr(0, prefix.size()) != prefix) continue;
      if (FileTagOwnerAlive(name.substr(prefix.size()))) continue;
      std::error_code ec;  // best effort: a folder that stays is only clutter
      std::filesystem::remove_all("/tmp/" + std::string(name), ec);
    }
    ::closedir(d);
  }
  std::string tmpl = "/tmp/" + prefix + OwnerFileTag() + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return PosixError("create a folder for " + kind, errno);
  return RunDir(tmpl);
}

RunDir::~RunDir() {
  if (!path_.empty()) ::rmdir(path_.c_str());
}

Status ShareSocket(const std::string& path, const std::string& group) {
  struct group* g = ::getgrnam(group.c_str());
  if (!g) return NotFoundError("no group " + group + " for the socket " + path);
  if (::chown(path.c_str(), uid_t(-1), g->gr_gid) != 0 || ::chmod(path.c_str(), 0660) != 0)
    return PosixError("give the socket " + path + " to group " + group, errno);
  return Status::Ok();
}

std::string ExportUri(const ExportOptions& o) {
  if (!o.socket.empty())
    return (o.tls_dir.empty() ? "nbd+unix:///?socket=" : "nbds+unix:///?socket=") + o.socket;
  const std::string host =
      o.listen_host.find(':') != std::string::npos ? "[" + o.listen_host + "]" : o.listen_host;
  return StrFormat("%s://%s:%d/", o.tls_dir.empty() ? "nbd" : "nbds", host.c_str(), o.listen_port);
}

Result<std::unique_ptr<ServerProcess>> StartExport(const ExportOptions& given) {
  // A daemon works from "/": every path it is given must be absolute.
  ExportOptions o = given;
  o.repo_location = location::Absolute(o.repo_location);
  for (std::string* path : {&o.s3_ca_file, &o.key.key_file, &o.socket, &o.pidfile, &o.tls_dir}) {
    if (!path->empty()) *path = std::filesystem::absolute(*path).lexically_normal().string();
  }
  if (o.plugin.empty())
    return UnavailableError("the nbdkit plugin nbdkit-vmbackup-plugin.so was not found");
  if (o.socket.empty() == o.listen_host.empty())
    return InvalidArgumentError("an export needs a unix socket or a TCP address (one of them)");
  if (o.pidfile.empty()) return InvalidArgumentError("an export needs a pid file");
  SpawnOptions so;
  // In the foreground nbdkit always exits with its parent; a detached export daemonizes.
  so.argv = {"nbdkit", "-P", o.pidfile};
  if (!o.detach) so.argv.insert(so.argv.end(), {"--foreground", "--exit-with-parent"});
  so.daemonizes = o.detach;
  if (!o.socket.empty()) {
    // nbdkit does not remove its socket when it stops; one left by a server that is gone
    // would make this one fail with "Address already in use".
    struct stat st;
    if (::lstat(o.socket.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return InvalidArgumentError(o.socket + " exists and is not a socket");
      ::unlink(o.socket.c_str());
    }
    so.argv.insert(so.argv.end(), {"-U", o.socket});
  } else {
    so.argv.insert(so.argv.end(), {"-i", o.listen_host, "-p", std::to_string(o.listen_port)});
  }
  if (!o.tls_dir.empty()) {
    for (const char* f : {"ca-cert.pem", "server-cert.pem", "server-key.pem"}) {
      if (!io::PathExists(io::JoinPath(o.tls_dir, f)))
        return InvalidArgumentError("TLS folder " + o.tls_dir + ": " + f + " is missing");
    }
    so.argv.insert(so.argv.end(), {"--tls=require", "--tls-certificates=" + o.tls_dir});
  }
  if (o.cow) {
    so.argv.push_back("--filter=cow");
  } else {
    so.argv.push_back("-r");
  }
  so.argv.insert(so.argv.end(),
                 {o.plugin, "repo=" + o.repo_location, "point=" + o.point_id,
                  "disk=" + std::to_string(o.disk_key), "cache=" + std::to_string(o.cache_mib)});
  if (!o.key.key_file.empty()) so.argv.push_back("key-file=" + o.key.key_file);
  if (!o.s3_ca_file.empty()) so.argv.push_back("s3-ca-file=" + o.s3_ca_file);
  if (o.key.passphrase) so.env.push_back("VMBACKUP_PASSPHRASE=" + *o.key.passphrase);
  so.pidfile = o.pidfile;
  so.log_file = o.log_file;
  so.detach = o.detach;
  VMBACKUP_ASSIGN_OR_RETURN(auto p, ServerProcess::Start(so));
  if (!o.socket.empty()) {
    p->AddCleanup(o.socket);
    if (!o.socket_group.empty()) VMBACKUP_RETURN_IF_ERROR(ShareSocket(o.socket, o.socket_group));
  }
  return p;
}

namespace {

// qemu-storage-daemon with `args`, serving on unix socket `socket` (removed first, and again
// when it stops).
Result<std::unique_ptr<ServerProcess>> StartStorageDaemon(std::vector<std::string> args,
                                                          const std::string& socket,
                                                          const std::string& pidfile,
                                                          const std::string& log_file,
                                                          bool detach) {
  ::unlink(socket.c_str());
  SpawnOptions so;
  so.argv = {"qemu-storage-daemon"};
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.argv.insert(so.argv.end(), {"--pidfile", pidfile});
  so.pidfile = pidfile;
  so.log_file = log_file;
  so.detach = detach;
  VMBACKUP_ASSIGN_OR_RETURN(auto p, ServerProcess::Start(so));
  p->AddCleanup(socket);
  return p;
}

}  // namespace

nlohmann::json NbdBackingNode(const std::string& socket) {
  return {
      {"driver", "nbd"}, {"node-name", "point"}, {"server", {{"type", "unix"}, {"path", socket}}},
      {"export", ""},    {"read-only", true},    {"reconnect-delay", 30}};
}

Result<std::unique_ptr<ServerProcess>> StartOverlay(const OverlayOptions& o) {
  if (io::PathExists(o.overlay)) {
    VMBACKUP_ASSIGN_OR_RETURN(
        std::string info, RunCommandOk({"qemu-img", "info", "-U", "--output=json", o.overlay}, 60));
    auto j = nlohmann::json::parse(info, nullptr, false);
    const std::string backing =
        j.is_object() ? j.value("backing-filename", std::string()) : std::string();
    const std::string format = j.is_object() ? j.value("format", std::string()) : std::string();
    if (format != "qcow2" || backing != o.backing_label) {
      return InvalidArgumentError(StrFormat(
          "%s is not an overlay of this disk (format %s, made for '%s', not '%s'): give a new "
          "file",
          o.overlay.c_str(), format.c_str(), backing.c_str(), o.backing_label.c_str()));
    }
  } else {
    // The backing name is a label, never opened: the daemon is given the export explicitly.
    VMBACKUP_RETURN_IF_ERROR(
        RunCommandOk({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", o.backing_label, "-F",
                      "raw", o.overlay, std::to_string(o.size)},
                     60)
            .status());
  }
  const nlohmann::json backing = NbdBackingNode(o.backing_socket);
  const nlohmann::json file = {
      {"driver", "file"}, {"node-name", "overlay-file"}, {"filename", o.overlay}};
  const nlohmann::json qcow2 = {{"driver", "qcow2"},
                                {"node-name", "overlay"},
                                {"file", "overlay-file"},
                                {"backing", "point"}};
  const nlohmann::json server = {{"addr", {{"type", "unix"}, {"path", o.socket}}}};
  const nlohmann::json exp = {{"type", "nbd"},
                              {"id", "overlay"},
                              {"node-name", "overlay"},
                              {"name", ""},
                              {"writable", true}};
  return StartStorageDaemon({"--blockdev", backing.dump(), "--blockdev", file.dump(), "--blockdev",
                             qcow2.dump(), "--nbd-server", server.dump(), "--export", exp.dump()},
                            o.socket, o.pidfile, o.log_file, false);
}

Result<std::unique_ptr<ServerProcess>> StartProxy(const ProxyOptions& o) {
  const nlohmann::json backing = NbdBackingNode(o.backing_socket);
  const nlohmann::json server = {{"addr", {{"type", "unix"}, {"path", o.socket}}}};
  const nlohmann::json exp = {
      {"type", "nbd"}, {"id", "point"}, {"node-name", "point"}, {"name", ""}, {"writable", false}};
  return StartStorageDaemon(
      {"--blockdev", backing.dump(), "--nbd-server", server.dump(), "--export", exp.dump()},
      o.socket, o.pidfile, o.log_file, o.detach);
}

}  // namespace vmbackup::live
