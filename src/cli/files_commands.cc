#include "cli/files_commands.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/strings.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "cli/serve_commands.h"
#include "files/disk_browser.h"
#include "files/guest_browser.h"
#include "live/server_process.h"
#include "live/shared_point_disk.h"
#include "repo/point.h"

namespace vmbackup::cli {
namespace {

struct FilesOpts {
  RepoOpts repo;
  int disk = 2000, partition = -1;
  std::vector<std::string> paths;
  std::string to;
  bool recursive = false, appliance = false;
};

// A point's disk opened for browsing, with what keeps it readable (the repository under its
// shared lock). Members go in reverse order of need.
struct OpenPointDisk {
  LockedRepo locked;
  std::string point_id;
  std::unique_ptr<live::SharedPointDisk> disk;
  std::unique_ptr<files::DiskBrowser> browser;
  // The appliance's way in, for file systems libtsk cannot read: the point's export.
  std::optional<live::RunDir> run_dir;
  std::unique_ptr<live::ServerProcess> exporter;
  std::unique_ptr<files::GuestBrowser> guest;
};

// The volume a command works on, and whether libguestfs's appliance reads it: when asked
// (--appliance), or when libtsk cannot read the partition named.
struct Target {
  files::Volume volume;
  bool appliance = false;
};

Result<Target> ChooseTarget(OpenPointDisk& p, const FilesOpts& o) {
  const auto& vols = p.browser->volumes();
  if (!o.appliance) {
    auto v = p.browser->Pick(o.partition);
    if (v) return Target{**v, false};
    // Only a file system libtsk does not know goes to the appliance: the partition named, or
    // the disk's only one.
    if (v.error().code() != ErrorCode::kNotSupported || (o.partition < 0 && vols.size() != 1))
      return v.error();
  }
  const int number = o.partition >= 0 ? o.partition : vols.size() == 1 ? vols[0].number : -1;
  if (number < 0)
    return InvalidArgumentError("the disk has several partitions: choose one with --partition N");
  Target t{{}, true};
  auto it =
      std::find_if(vols.begin(), vols.end(), [&](const auto& v) { return v.number == number; });
  if (it == vols.end()) {
    return NotFoundError(
        StrFormat("the disk has no partition %d (it has %zu)", number, vols.size()));
  }
  t.volume = *it;
  // Start the export and the appliance (tens of seconds under TCG): once per command.
  VMBACKUP_ASSIGN_OR_RETURN(live::RunDir dir, live::RunDir::Make("files"));
  p.run_dir.emplace(std::move(dir));
  live::ExportOptions eo = ExportOf(o.repo, p.locked.key, p.point_id, o.disk);
  eo.socket = *p.run_dir / "point.sock";
  eo.pidfile = *p.run_dir / "nbdkit.pid";
  eo.log_file = *p.run_dir / "nbdkit.log";
  VMBACKUP_ASSIGN_OR_RETURN(p.exporter, live::StartExport(eo));
  p.exporter->AddCleanup(eo.log_file);
  Note("starting libguestfs's appliance to read partition %d (%s)", t.volume.number,
       t.volume.description.c_str());
  VMBACKUP_ASSIGN_OR_RETURN(p.guest, files::GuestBrowser::Launch(eo.socket));
  VMBACKUP_ASSIGN_OR_RETURN(t.volume.fs_type, p.guest->FsType(t.volume.number));
  return t;
}

Result<OpenPointDisk> OpenForFiles(const FilesOpts& o) {
  OpenPointDisk out;
  VMBACKUP_ASSIGN_OR_RETURN(out.locked, OpenLocked(o.repo, false, "files"));
  VMBACKUP_ASSIGN_OR_RETURN(out.point_id, ResolvePoint(*out.locked.repo, o.repo.point, o.repo.vm));
  VMBACKUP_ASSIGN_OR_RETURN(repo::Point point, repo::LoadPoint(*out.locked.repo, out.point_id));
  VMBACKUP_ASSIGN_OR_RETURN(out.disk, live::SharedPointDisk::Open(*out.locked.repo, point, o.disk));
  live::SharedPointDisk* d = out.disk.get();
  VMBACKUP_ASSIGN_OR_RETURN(
      out.browser, files::DiskBrowser::Open(d->capacity(), [d](uint64_t off, std::span<uint8_t> b) {
        return d->Read(off, b);
      }));
  return out;
}

std::string ModeString(const files::Entry& e) {
  std::string s(1, e.type == 'o' ? '?' : e.type);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (e.mode & (0400u >> i)) ? rwx[i] : '-';
  return s;
}

nlohmann::json EntryJson(const files::Entry& e) {
  nlohmann::json j = {{"path", e.path},
                      {"type", std::string(1, e.type)},
                      {"size", e.size},
                      {"mode", e.mode},
                      {"uid", e.uid},
                      {"gid", e.gid},
                      {"mtime", UtcRfc3339(e.mtime)},
                      {"mtime_ns", e.mtime * 1000000000 + e.mtime_nsec},
                      {"atime_ns", e.atime * 1000000000 + e.atime_nsec}};
  if (e.type == 'l') j["link"] = e.link;
  return j;
}

nlohmann::json VolumeJson(const files::Volume& v) {
  return {{"partition", v.number},
          {"offset", v.offset},
          {"length", v.length},
          {"description", v.description},
          {"filesystem", v.fs_type.empty() ? nlohmann::json(nullptr) : nlohmann::json(v.fs_type)}};
}

Status ListPartitions(const OpenPointDisk& p, const FilesOpts& o) {
  const auto& vols = p.browser->volumes();
  if (Flags().json) {
    nlohmann::json j = {{"point", p.point_id},
                        {"disk", o.disk},
                        {"table", p.browser->table_type()},
                        {"partitions", nlohmann::json::array()}};
    for (const auto& v : vols) j["partitions"].push_back(VolumeJson(v));
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("point %s disk %d: %s\n", p.point_id.c_str(), o.disk,
              p.browser->table_type().empty()
                  ? "no partition table"
                  : (p.browser->table_type() + " partition table").c_str());
  std::printf("%4s  %12s  %10s  %-12s  %s\n", "part", "offset", "size", "file system",
              "description");
  for (const auto& v : vols) {
    std::printf("%4d  %12llu  %10s  %-12s  %s\n", v.number, (unsigned long long)v.offset,
                HumanBytes(v.length).c_str(),
                v.fs_type.empty() ? "(unreadable)" : v.fs_type.c_str(), v.description.c_str());
  }
  return Status::Ok();
}

Status Ls(const FilesOpts& o) {
  VMBACKUP_ASSIGN_OR_RETURN(OpenPointDisk p, OpenForFiles(o));
  if (o.paths.empty() && o.partition < 0) return ListPartitions(p, o);
  VMBACKUP_ASSIGN_OR_RETURN(Target t, ChooseTarget(p, o));
  const files::Volume* v = &t.volume;
  const std::string path = o.paths.empty() ? "/" : o.paths[0];
  std::vector<files::Entry> entries;
  if (t.appliance) {
    VMBACKUP_ASSIGN_OR_RETURN(entries, p.guest->List(v->number, path, o.recursive));
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(entries, p.browser->List(v->number, path, o.recursive));
  }
  if (Flags().json) {
    nlohmann::json j = {{"point", p.point_id},
                        {"disk", o.disk},
                        {"partition", VolumeJson(*v)},
                        {"entries", nlohmann::json::array()}};
    for (const auto& e : entries) j["entries"].push_back(EntryJson(e));
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  for (const auto& e : entries) {
    std::printf("%s %6u %6u %12llu %s %s%s%s\n", ModeString(e).c_str(), e.uid, e.gid,
                (unsigned long long)e.size, UtcRfc3339(e.mtime).c_str(), e.path.c_str(),
                e.type == 'l' ? " -> " : "", e.type == 'l' ? e.link.c_str() : "");
  }
  return Status::Ok();
}

Status Get(const FilesOpts& o) {
  if (o.paths.empty()) return InvalidArgumentError("give the paths to fetch");
  struct stat st;
  if (::stat(o.to.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return InvalidArgumentError("--to " + o.to + " is not a folder");
  const auto start = std::chrono::steady_clock::now();
  VMBACKUP_ASSIGN_OR_RETURN(OpenPointDisk p, OpenForFiles(o));
  VMBACKUP_ASSIGN_OR_RETURN(Target t, ChooseTarget(p, o));
  const files::Volume* v = &t.volume;
  files::ExtractStats total;
  for (const auto& path : o.paths) {
    files::ExtractStats s;
    if (t.appliance) {
      VMBACKUP_ASSIGN_OR_RETURN(s, p.guest->Extract(v->number, path, o.to));
    } else {
      VMBACKUP_ASSIGN_OR_RETURN(s, p.browser->Extract(v->number, path, o.to));
    }
    total.files += s.files;
    total.folders += s.folders;
    total.links += s.links;
    total.bytes += s.bytes;
    total.skipped += s.skipped;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (Flags().json) {
    std::printf("%s\n", nlohmann::json{{"point", p.point_id},
                                       {"disk", o.disk},
                                       {"partition", v->number},
                                       {"to", o.to},
                                       {"files", total.files},
                                       {"folders", total.folders},
                                       {"links", total.links},
                                       {"skipped", total.skipped},
                                       {"bytes", total.bytes},
                                       {"seconds", seconds}}
                            .dump(2)
                            .c_str());
  } else if (Flags().verbosity > 0) {
    std::printf(
        "fetched %llu files, %llu folders, %llu links (%s) from partition %d into %s in "
        "%.2f s%s\n",
        (unsigned long long)total.files, (unsigned long long)total.folders,
        (unsigned long long)total.links, HumanBytes(total.bytes).c_str(), v->number, o.to.c_str(),
        seconds,
        total.skipped ? StrFormat("; %llu special files or odd names skipped",
                                  (unsigned long long)total.skipped)
                            .c_str()
                      : "");
  }
  return Status::Ok();
}

}  // namespace

void AddFilesCommands(CLI::App& app, int* exit_code) {
  CLI::App* files = app.add_subcommand(
      "files", "list and fetch files of a restore point without restoring the disk");
  files->require_subcommand(1);
  auto o = std::make_shared<FilesOpts>();
  auto common = [o](CLI::App* c) {
    AddRepoOptions(c, o->repo);
    AddPointArgument(c, o->repo);
    c->add_option("--disk", o->disk, "the disk's device key (default 2000)");
    c->add_option("--partition", o->partition,
                  "partition number (files ls shows them); default: the only file system");
    c->add_flag("--appliance", o->appliance,
                "read through libguestfs's appliance even where the in-process reader could "
                "(it is used by itself for XFS, btrfs, LVM and the rest)");
  };
  CLI::App* c = files->add_subcommand(
      "ls", "list the partitions and file systems, or (with PATH or --partition) a folder");
  common(c);
  c->add_option("PATH", o->paths, "a folder or file inside the file system (default /)")
      ->expected(0, 1);
  c->add_flag("-r,--recursive", o->recursive, "everything below PATH");
  Bind(c, exit_code, [o]() -> Status { return Ls(*o); });
  c = files->add_subcommand("get",
                            "copy files and folders out, with their modification times and modes");
  common(c);
  c->add_option("PATH", o->paths, "files or folders inside the file system")->required();
  c->add_option("--to", o->to, "an existing folder to copy them into")->required();
  Bind(c, exit_code, [o]() -> Status { return Get(*o); });
}

}  // namespace vmbackup::cli
