// The helper servers behind live disks: nbdkit with our plugin (a point's disk over NBD) and
// qemu-storage-daemon (a qcow2 overlay that takes the writes). No shell: arguments go to the
// program as they are. Secrets go through the environment of the child only.
#pragma once

#include <sys/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"
#include "repo/keys.h"

namespace vmbackup::live {

struct SpawnOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // NAME=VALUE added to this process's environment
  std::string pidfile;           // the server writes it once it serves: Start waits for it
  std::string log_file;          // its stdout and stderr go here (appended); "": inherited
  bool detach = false;           // its own session: survives this process and its terminal
  // The program forks into the background itself (nbdkit without --foreground: in the
  // foreground it asks for SIGTERM when its parent dies); the pid file names the server.
  bool daemonizes = false;
  int start_seconds = 30;
};

// A started server. Destroying it stops it (SIGTERM, then SIGKILL after 10 s) unless
// Release() was called; Stop() also removes `cleanup` files.
class ServerProcess {
 public:
  static Result<std::unique_ptr<ServerProcess>> Start(const SpawnOptions& options);
  ~ServerProcess();
  pid_t pid() const { return pid_; }
  // Files removed after the server stopped (its socket, pid file).
  void AddCleanup(std::string path) { cleanup_.push_back(std::move(path)); }
  // Stops the server and waits for it. True when it was still running.
  bool Stop();
  // Leaves the server running (detached ones outlive us); returns its pid.
  pid_t Release();
  // Whether the server still runs (reaps it when it ended).
  bool Running();

 private:
  explicit ServerProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool child_ = true;  // false: a daemon that is not our child (found by its pid file)
  bool reaped_ = false;
  std::vector<std::string> cleanup_;
};

// Stops a server started earlier by another vmbackup process (pid and its start time, as
// ProcessStart gives): SIGTERM, then SIGKILL after `grace_seconds`. True when it had to.
bool StopDetached(pid_t pid, uint64_t start, int grace_seconds = 10);

struct ExportOptions {
  std::string plugin;         // nbdkit-vmbackup-plugin.so
  std::string repo_location;  // a folder or an S3 URL (location/location.h)
  std::string s3_ca_file;     // for an S3 server with a private CA
  std::string point_id;
  int disk_key = 2000;
  repo::KeySource key;  // a passphrase reaches nbdkit through its environment only
  std::string socket;   // a unix socket, or
  std::string listen_host;
  int listen_port = 0;  // TCP (with tls_dir, or on a loopback address)
  std::string tls_dir;  // ca-cert.pem, server-cert.pem, server-key.pem: TLS required
  bool cow = false;     // writable; writes live in nbdkit's memory/temp file and die with it
  uint64_t cache_mib = 64;
  std::string pidfile, log_file;
  bool detach = false;       // else nbdkit exits with this process (--exit-with-parent)
  std::string socket_group;  // the socket's group (rw for it): libvirt's QEMU user connects
};
Result<std::unique_ptr<ServerProcess>> StartExport(const ExportOptions& options);

// qemu-storage-daemon's node "point": the export at unix socket `socket`, read-only, waited
// for 30 s when it restarts.
nlohmann::json NbdBackingNode(const std::string& socket);

struct OverlayOptions {
  std::string backing_socket;  // the read-only export
  std::string overlay;         // qcow2; created when missing, refused when made for another disk
  std::string backing_label;   // written into a new overlay and checked on reuse
  uint64_t size = 0;
  std::string socket;  // the writable export
  std::string pidfile, log_file;
};
// qemu-storage-daemon: `overlay` over the export at `backing_socket` (reconnecting for 30 s
// when it restarts), served writable over NBD at `socket`, export name "".
Result<std::unique_ptr<ServerProcess>> StartOverlay(const OverlayOptions& options);

// A private folder (0700) for the sockets and pid files of one command's servers:
// /tmp/vmbackup-<kind>-<owner tag>-XXXXXX. Folders of the same kind whose owner is dead (a
// killed command) are removed first, with what they hold. Destroying it removes the folder
// (empty by then: the servers' cleanups removed their files).
class RunDir {
 public:
  static Result<RunDir> Make(const std::string& kind);
  RunDir(RunDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ~RunDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Makes a unix socket read-write for `group` (libvirt's QEMU user connects to it).
Status ShareSocket(const std::string& path, const std::string& group);

struct ProxyOptions {
  std::string backing_socket;  // the export
  std::string socket;          // served here, read-only, export name ""
  std::string pidfile, log_file;
  bool detach = false;
};
// qemu-storage-daemon between a client and the export: it waits up to 30 s for an export that
// restarts (reconnect-delay), so its clients never see the restart.
Result<std::unique_ptr<ServerProcess>> StartProxy(const ProxyOptions& options);

// "nbd+unix:///?socket=PATH" or "nbd[s]://HOST:PORT/".
std::string ExportUri(const ExportOptions& options);

}  // namespace vmbackup::live
