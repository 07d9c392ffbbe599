#include "cli/serve_commands.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/process.h"
#include "base/strings.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "io/posix_file.h"
#include "live/point_mount.h"
#include "live/server_process.h"
#include "repo/point.h"

namespace vmbackup::cli {

live::ExportOptions ExportOf(const RepoOpts& repo, const repo::KeySource& key,
                             const std::string& point_id, int disk) {
  live::ExportOptions eo;
  eo.plugin = PluginPath("nbdkit-vmbackup-plugin.so");
  eo.repo_location = RepoLocation(repo);
  eo.s3_ca_file = repo.s3_ca_file;
  eo.point_id = point_id;
  eo.disk_key = disk;
  eo.key = key;
  return eo;
}

Result<PointExport> ResolvePointExport(const RepoOpts& repo, int disk) {
  VMBACKUP_ASSIGN_OR_RETURN(OpenedRepo r, OpenRepoWithKey(repo));
  VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r.repo, repo.point, repo.vm));
  VMBACKUP_ASSIGN_OR_RETURN(repo::Point point, repo::LoadPoint(*r.repo, id));
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, repo::FindPointDisk(point, disk));
  return PointExport{ExportOf(repo, r.key, id, disk), point.disks[index].capacity};
}

namespace {

struct ServeOpts {
  RepoOpts repo;
  int disk = 2000;
  std::string socket, listen, tls, overlay, socket_group, run, info_file;
  bool cow = false;
  uint64_t cache_mib = 64;
};

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Runs `command` through /bin/sh with $uri set; returns its exit status.
Result<int> RunWithUri(const std::string& command, const std::string& uri) {
  const pid_t pid = ::fork();
  if (pid < 0) return PosixError("fork", errno);
  if (pid == 0) {
    ::setenv("uri", uri.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return PosixError("wait for --run", errno);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits for SIGINT or SIGTERM while the servers run; an error when one of them ends by itself.
Status WaitForSignal(std::vector<live::ServerProcess*> servers) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  for (;;) {
    timespec tick{1, 0};
    if (::sigtimedwait(&set, nullptr, &tick) > 0) return Status::Ok();
    for (auto* s : servers)
      if (!s->Running()) return UnavailableError("the export's server ended by itself");
  }
}

Status Serve(ServeOpts& o) {
  if (o.socket.empty() == o.listen.empty())
    return InvalidArgumentError("give one of --socket PATH and --listen HOST:PORT");
  if (o.cow && !o.overlay.empty())
    return InvalidArgumentError(
        "--cow and --writable-overlay are two ways to take writes: give one");
  if (!o.overlay.empty() && o.socket.empty())
    return InvalidArgumentError("--writable-overlay serves on a unix socket (--socket) only");
  std::pair<std::string, int> listen;
  if (!o.listen.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(listen, ParseHostPort(o.listen, "--listen", false));
    if (o.tls.empty() && !IsLoopback(listen.first)) {
      return InvalidArgumentError("--listen " + o.listen +
                                  " reaches other machines: give --tls DIR (or listen on "
                                  "127.0.0.1)");
    }
  }
  VMBACKUP_ASSIGN_OR_RETURN(PointExport pe, ResolvePointExport(o.repo, o.disk));
  const std::string id = pe.options.point_id;
  const uint64_t capacity = pe.capacity;
  VMBACKUP_ASSIGN_OR_RETURN(live::RunDir run_dir, live::RunDir::Make("serve"));
  live::ExportOptions eo = pe.options;
  eo.listen_host = listen.first;
  eo.listen_port = listen.second;
  eo.tls_dir = o.tls;
  eo.cow = o.cow;
  eo.cache_mib = o.cache_mib;
  eo.pidfile = run_dir / "nbdkit.pid";
  eo.socket = o.overlay.empty() ? o.socket : (o.socket.empty() ? "" : run_dir / "point.sock");
  if (o.overlay.empty()) eo.socket_group = o.socket_group;
  VMBACKUP_ASSIGN_OR_RETURN(auto exporter, live::StartExport(eo));
  std::vector<live::ServerProcess*> servers = {exporter.get()};
  std::string uri = live::ExportUri(eo);
  std::unique_ptr<live::ServerProcess> overlay;
  if (!o.overlay.empty()) {
    live::OverlayOptions ov;
    ov.backing_socket = eo.socket;
    ov.overlay = o.overlay;
    ov.backing_label = StrFormat("vmbackup:%s:%d", id.c_str(), o.disk);
    ov.size = capacity;
    ov.socket = o.socket;
    ov.pidfile = run_dir / "qsd.pid";
    VMBACKUP_ASSIGN_OR_RETURN(overlay, live::StartOverlay(ov));
    if (!o.socket_group.empty())
      VMBACKUP_RETURN_IF_ERROR(live::ShareSocket(o.socket, o.socket_group));
    servers.push_back(overlay.get());
    uri = "nbd+unix:///?socket=" + o.socket;
  }
  const bool writable = o.cow || !o.overlay.empty();
  const nlohmann::json info = {{"uri", uri},           {"point", id},
                               {"disk", o.disk},       {"size", capacity},
                               {"writable", writable}, {"pid", int(::getpid())}};
  if (!o.info_file.empty())
    VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(o.info_file, info.dump() + "\n"));
  if (Flags().json) {
    std::printf("%s\n", info.dump().c_str());
  } else if (Flags().verbosity > 0) {
    const std::string mode = o.cow                ? "writes kept until it stops"
                             : !o.overlay.empty() ? "writes go to " + o.overlay
                                                  : "read-only";
    std::printf("serving point %s disk %d (%s, %s) at %s\n", id.c_str(), o.disk,
                HumanBytes(capacity).c_str(), mode.c_str(), uri.c_str());
    if (o.run.empty()) std::printf("stop with Ctrl-C\n");
  }
  std::fflush(stdout);
  Status s;
  if (!o.run.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(int rc, RunWithUri(o.run, uri));
    if (rc != 0) s = IOError(StrFormat("--run command exited with status %d", rc));
  } else {
    s = WaitForSignal(servers);
  }
  if (overlay) overlay->Stop();
  exporter->Stop();
  return s;
}

struct MountOpts {
  RepoOpts repo;
  int disk = 2000;
  std::string dir;
  uint64_t cache_mib = 64;
};

Status Mount(const MountOpts& o) {
  VMBACKUP_ASSIGN_OR_RETURN(PointExport pe, ResolvePointExport(o.repo, o.disk));
  const std::string id = pe.options.point_id;
  live::ExportOptions eo = pe.options;
  eo.cache_mib = o.cache_mib;
  VMBACKUP_ASSIGN_OR_RETURN(live::MountReport mounted, live::MountPoint(eo, o.dir));
  const live::MountReport* report = &mounted;
  if (Flags().json) {
    nlohmann::json j = {{"point", id},
                        {"disk", o.disk},
                        {"disk_file", report->disk_file},
                        {"loop", report->loop},
                        {"partitions", nlohmann::json::array()}};
    for (const auto& p : report->partitions) {
      j["partitions"].push_back({{"partition", p.number},
                                 {"device", p.device},
                                 {"filesystem", p.fs_type},
                                 {"dir", p.dir},
                                 {"not_mounted", p.why_not}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("point %s disk %d: the whole disk is %s (read-only)\n", id.c_str(), o.disk,
              report->disk_file.c_str());
  if (report->loop.empty()) std::printf("(not root: no loop device, no mounts)\n");
  for (const auto& p : report->partitions) {
    if (!p.dir.empty()) {
      std::printf("  partition %d (%s) mounted read-only on %s\n", p.number, p.fs_type.c_str(),
                  p.dir.c_str());
    } else {
      std::printf("  partition %d (%s) not mounted: %s\n", p.number,
                  p.fs_type.empty() ? "?" : p.fs_type.c_str(), p.why_not.c_str());
    }
  }
  std::printf("undo with: vmbackup umount %s\n", o.dir.c_str());
  return Status::Ok();
}

}  // namespace

void AddServeCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ServeOpts>();
  CLI::App* c = app.add_subcommand(
      "serve", "serve a restore point's disk over NBD, read-only (or with writes kept aside)");
  AddRepoOptions(c, o->repo);
  AddPointArgument(c, o->repo);
  c->add_option("--disk", o->disk, "the disk's device key (default 2000)");
  c->add_option("--socket", o->socket, "serve on this unix socket");
  c->add_option("--listen", o->listen,
                "serve on HOST:PORT over TCP (another machine: with --tls only)");
  c->add_option("--tls", o->tls,
                "folder with ca-cert.pem, server-cert.pem, server-key.pem: "
                "require TLS (nbdkit --tls-certificates)");
  c->add_flag("--cow", o->cow,
              "writable for a throwaway session: writes stay in memory and die with the server");
  c->add_option("--writable-overlay", o->overlay,
                "writable: writes go to this qcow2 file (created, or reused when it was made for "
                "the same point and disk); the repository never changes");
  c->add_option("--socket-group", o->socket_group,
                "make the socket read-write for this group (libvirt-qemu for a VM under libvirt)");
  c->add_option("--cache-size", o->cache_mib, "MiB of decoded chunks kept in memory (default 64)");
  c->add_option("--run", o->run,
                "run this shell command with $uri set, then stop serving (its exit status counts)");
  c->add_option("--info-file", o->info_file,
                "write uri, point, disk and size here as JSON once "
                "serving");
  Bind(c, exit_code, [o]() -> Status { return Serve(*o); });

  auto m = std::make_shared<MountOpts>();
  c = app.add_subcommand("mount",
                         "mount a restore point's disk read-only: DIR/disk.raw and its file "
                         "systems under DIR/partN (loop devices and mounts need root)");
  AddRepoOptions(c, m->repo);
  AddPointArgument(c, m->repo);
  c->add_option("DIR", m->dir, "an empty folder")->required();
  c->add_option("--disk", m->disk, "the disk's device key (default 2000)");
  c->add_option("--cache-size", m->cache_mib, "MiB of decoded chunks kept in memory (default 64)");
  Bind(c, exit_code, [m]() -> Status { return Mount(*m); });

  auto dir = std::make_shared<std::string>();
  c = app.add_subcommand("umount", "undo vmbackup mount: unmount, detach, stop the servers");
  c->add_option("DIR", *dir, "the folder given to vmbackup mount")->required();
  Bind(c, exit_code, [dir]() -> Status {
    VMBACKUP_RETURN_IF_ERROR(live::UnmountPoint(*dir));
    if (Flags().verbosity > 0 && !Flags().json) std::printf("unmounted %s\n", dir->c_str());
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
