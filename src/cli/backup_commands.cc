#include "cli/backup_commands.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/strings.h"
#include "cli/cancel.h"
#include "cli/instant_commands.h"
#include "cli/output.h"
#include "cli/partial_file.h"
#include "cli/repo_access.h"
#include "cli/source_access.h"
#include "engine/backup.h"
#include "engine/restore.h"
#include "format/vmdk/convert.h"
#include "io/posix_file.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

struct BackupOpts {
  RepoOpts repo;
  SourceOpts source;
  std::string transport = "san:hotadd:nbdssl:nbd:https", to_file, name, vm;
  std::string format = "raw", vmdk_type = "sparse";
  bool quiesce = false, allow_crash = false, full = false, no_fallback = false;
  bool to_vm = false, in_place = false, verify = false, progress = true, ignore_damage = false;
  bool instant = false;
  int disk = 2000, parallel_disks = 2, reads_in_flight = 0;
  double audit_cbt = 0;
  std::string notes;
};

std::string Rate(uint64_t bytes, double seconds) {
  return seconds > 0 ? HumanBytes(uint64_t(double(bytes) / seconds)) + "/s" : "-";
}

// One line per disk on a terminal, redrawn in place.
void DrawProgress(const std::vector<engine::DiskProgress*>& disks, double seconds) {
  std::string line;
  for (const auto* d : disks) {
    uint64_t total = d->total, done = d->done;
    int pct = total ? int(done * 100 / total) : 100;
    double rate = seconds > 0 ? double(done) / seconds : 0;
    double eta = rate > 0 ? double(total - std::min(total, done)) / rate : 0;
    line += StrFormat("disk %d %3d%% %s/%s %s ETA %.0fs  ", d->device_key, pct,
                      HumanBytes(done).c_str(), HumanBytes(total).c_str(),
                      Rate(done, seconds).c_str(), eta);
  }
  std::fprintf(stderr, "\r%s", line.c_str());
  std::fflush(stderr);
}

json BackupJson(const engine::BackupReport& r) {
  json disks = json::array();
  for (const auto& d : r.disks) {
    disks.push_back({{"device_key", d.device_key},
                     {"label", d.label},
                     {"mode", d.mode},
                     {"full_reason", d.full_reason},
                     {"transport", d.transport},
                     {"capacity", d.capacity},
                     {"change_id", d.change_id},
                     {"bytes_changed", d.bytes_changed},
                     {"bytes_read", d.bytes_read},
                     {"bytes_zero", d.bytes_zero},
                     {"bytes_new", d.bytes_new},
                     {"bytes_deduplicated", d.bytes_deduplicated},
                     {"cbt_queries", d.cbt_queries},
                     {"reads_in_flight", d.reads_in_flight},
                     {"audited_chunks", d.audited_chunks},
                     {"damaged_reread", d.damaged_reread},
                     {"seconds", d.seconds},
                     {"read_seconds", d.read_seconds},
                     {"store_seconds", d.store_seconds}});
  }
  return {{"id", r.point},
          {"vm", r.vm},
          {"parent", r.parent.empty() ? json(nullptr) : json(r.parent)},
          {"snapshot", r.snapshot},
          {"consistency", r.consistency},
          {"disks", disks},
          {"notes", r.notes},
          {"bytes_stored", r.bytes_stored},
          {"seconds", r.seconds},
          {"timings",
           {{"hashing", r.hash_seconds},
            {"compression", r.compress_seconds},
            {"repository_write", r.pack_write_seconds}}},
          {"transfer", TransferJson(r.transfer)}};
}

void PrintBackup(const engine::BackupReport& r) {
  std::printf("backup of %s: point %s (%s-consistent, snapshot %s removed)%s\n", r.vm.c_str(),
              r.point.c_str(), r.consistency.c_str(), r.snapshot.c_str(),
              r.parent.empty() ? "" : (", parent " + r.parent).c_str());
  for (const auto& n : r.notes) std::printf("  note: %s\n", n.c_str());
  for (const auto& d : r.disks) {
    std::printf("  disk %d (%s, %s): %s%s via %s\n", d.device_key, d.label.c_str(),
                HumanBytes(d.capacity).c_str(), d.mode.c_str(),
                d.full_reason.empty() ? "" : (" because " + d.full_reason).c_str(),
                d.transport.c_str());
    std::printf(
        "    changed %s, read %s, zero %s, new %s, deduplicated %s; %d CBT queries; %.2f s "
        "(%s)\n",
        HumanBytes(d.bytes_changed).c_str(), HumanBytes(d.bytes_read).c_str(),
        HumanBytes(d.bytes_zero).c_str(), HumanBytes(d.bytes_new).c_str(),
        HumanBytes(d.bytes_deduplicated).c_str(), d.cbt_queries, d.seconds,
        Rate(d.bytes_read, d.seconds).c_str());
    if (d.damaged_reread) {
      std::printf("    read again %s that CBT calls unchanged but the repository holds damaged\n",
                  HumanBytes(d.damaged_reread).c_str());
    }
  }
  double read = 0;
  for (const auto& d : r.disks) read += d.read_seconds;
  std::printf(
      "  time %.2f s; stages (summed over threads): source read %.2f s, hashing %.2f s, "
      "compression %.2f s, repository write %.2f s; repository grew by %s\n",
      r.seconds, read, r.hash_seconds, r.compress_seconds, r.pack_write_seconds,
      HumanBytes(r.bytes_stored).c_str());
  if (r.transfer.requests) {  // a remote repository
    std::printf("  repository traffic: %s\n", TransferText(r.transfer).c_str());
  }
}

// Runs a program (no shell) and waits for it; kIOError with its exit status on failure.
Status RunProgram(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (rc != 0) return PosixError("run " + argv[0], rc);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return PosixError("wait for " + argv[0], errno);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return IOError(argv[0] + " failed (status " + std::to_string(status) + ")");
  return Status::Ok();
}

// A restored raw file turned into the format asked for: VMDK by our own writer, qcow2 by
// qemu-img. The raw file is removed either way.
Status ConvertRestored(const std::string& raw, const std::string& out, const BackupOpts& o) {
  Status s;
  if (o.format == "vmdk") {
    auto type = vmdk::ParseDiskType(o.vmdk_type);
    auto src = type ? io::PosixFile::Open(raw, io::OpenMode::kReadOnly)
                    : Result<std::unique_ptr<io::PosixFile>>(type.error());
    s = !src ? src.error() : vmdk::ConvertDisk(**src, out, *type).status();
  } else {
    s = RunProgram({"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, out});
  }
  ::unlink(raw.c_str());  // early: it may be as large as the disk
  return s.WithContext("convert the restored disk to " + o.format);
}

json DamagedJson(const ExtentSet& damaged) {
  json out = json::array();
  for (const Extent& e : damaged) out.push_back({{"offset", e.offset}, {"length", e.length}});
  return out;
}

json RestoreJson(const engine::RestoreReport& r) {
  json disks = json::array();
  for (const auto& d : r.disks) {
    disks.push_back({{"device_key", d.device_key},
                     {"capacity", d.capacity},
                     {"target", d.target},
                     {"transport", d.transport},
                     {"mode", d.mode},
                     {"why_whole", d.why_whole},
                     {"bytes_planned", d.bytes_planned},
                     {"bytes_written", d.bytes_written},
                     {"bytes_zeroed", d.bytes_zeroed},
                     {"verified", d.verified},
                     {"damaged", DamagedJson(d.damaged)},
                     {"seconds", d.seconds}});
  }
  return {{"point", r.point},
          {"target", r.target},
          {"disks", disks},
          {"notes", r.notes},
          {"seconds", r.seconds}};
}

void PrintRestore(FILE* out, const engine::RestoreReport& r) {
  std::fprintf(out, "restored point %s to %s\n", r.point.c_str(), r.target.c_str());
  for (const auto& n : r.notes) std::fprintf(out, "  note: %s\n", n.c_str());
  for (const auto& d : r.disks) {
    std::fprintf(out, "  disk %d (%s) -> %s%s: %s, wrote %s%s of %s considered%s; %.2f s (%s)\n",
                 d.device_key, HumanBytes(d.capacity).c_str(), d.target.c_str(),
                 d.transport.empty() ? "" : (" via " + d.transport).c_str(), d.mode.c_str(),
                 HumanBytes(d.bytes_written).c_str(),
                 d.bytes_zeroed ? (" and zeroed " + HumanBytes(d.bytes_zeroed)).c_str() : "",
                 HumanBytes(d.bytes_planned).c_str(), d.verified ? ", verified" : "", d.seconds,
                 Rate(d.bytes_written, d.seconds).c_str());
    for (const Extent& e : d.damaged) {
      std::fprintf(out, "    DAMAGED, not restored: bytes %llu+%llu\n",
                   (unsigned long long)e.offset, (unsigned long long)e.length);
    }
  }
}

}  // namespace

void AddBackupCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<BackupOpts>();
  auto common = [o](CLI::App* c) {
    AddRepoOptions(c, o->repo);
    c->add_option("--transport", o->transport,
                  "transport modes to try, in order (default san:hotadd:nbdssl:nbd:https)");
    c->add_option(
        "--lock-wait", o->repo.lock_wait,
        "seconds to wait while gc or prune holds the repository, or another job holds the VM");
  };

  CLI::App* c = app.add_subcommand("backup", "back up a VM into a new restore point");
  common(c);
  AddSourceOptions(c, o->source, "the host", true);
  c->add_option("--vm", o->vm, "the VM's name")->required();
  c->add_flag("--quiesce", o->quiesce, "quiesce the guest's file systems for the snapshot");
  c->add_flag("--allow-crash-consistent", o->allow_crash,
              "with --quiesce: go on crash-consistent when quiescing fails");
  c->add_flag("--full", o->full, "read every allocated block, not only what changed");
  c->add_flag("--no-full-fallback", o->no_fallback,
              "fail when change tracking cannot give an incremental, instead of a full");
  c->add_option("--parallel-disks", o->parallel_disks, "disks read at once (default 2)");
  c->add_option("--reads-in-flight", o->reads_in_flight,
                "read requests per disk (default: as many as cores on san, 4 on network "
                "transports)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--notes", o->notes, "free-form notes kept with the point");
  c->add_option("--audit-cbt", o->audit_cbt,
                "re-read PERCENT of what change tracking calls unchanged and compare it with "
                "the previous point")
      ->check(CLI::Range(0.0, 100.0));
  c->add_flag_function(
      "--no-progress", [o](int64_t) { o->progress = false; }, "no progress display on a terminal");
  Bind(c, exit_code, [o]() -> Status {
    engine::BackupOptions bo;
    bo.vm = o->vm;
    bo.quiesce = o->quiesce;
    bo.allow_crash_consistent = o->allow_crash;
    bo.force_full = o->full;
    bo.no_full_fallback = o->no_fallback;
    bo.parallel_disks = o->parallel_disks;
    bo.reads_in_flight = o->reads_in_flight;
    bo.notes = o->notes;
    bo.audit_cbt_percent = o->audit_cbt;
    bo.lock_wait_seconds = o->repo.lock_wait;
    VMBACKUP_ASSIGN_OR_RETURN(bo.transports, hv::ParseTransportList(o->transport));
    VMBACKUP_ASSIGN_OR_RETURN(auto hv, ConnectSource(o->source));
    o->repo.vm = o->vm;
    // The lock object is plain text even in an encrypted repository: it names no VM.
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(o->repo, false, "backup"));
    bo.cancel = CancelOnSignals();  // the job then removes its snapshot and exits
    engine::BackupReport report;
    const bool tty = o->progress && !Flags().json && Flags().verbosity > 0 && ::isatty(2);
    auto started = std::chrono::steady_clock::now();
    engine::ProgressFn progress;
    if (tty) {
      progress = [started](const std::vector<engine::DiskProgress*>& disks) {
        DrawProgress(
            disks,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      };
    }
    Status s = AsJob(
        o->repo, *x.repo, "backup",
        [&](const catalog::CatalogWait& catalog) -> Status {
          VMBACKUP_ASSIGN_OR_RETURN(report, engine::RunBackup(*hv, *x.repo, catalog, bo, progress));
          return Status::Ok();
        },
        &report.point);
    if (tty) std::fprintf(stderr, "\n");
    VMBACKUP_RETURN_IF_ERROR(s);
    if (Flags().json) {
      std::printf("%s\n", BackupJson(report).dump(2).c_str());
    } else {
      PrintBackup(report);
    }
    return Status::Ok();
  });

  c = app.add_subcommand("restore", "restore a point to files, to a new VM, or in place");
  common(c);
  c->add_option("POINT", o->repo.point, "the restore point")->required();
  c->add_option("--to-file", o->to_file, "write one disk (--disk) to this new raw file");
  c->add_option("--disk", o->disk, "the disk's device key for --to-file (default 2000)");
  c->add_option("--format", o->format, "file format for --to-file: raw (default), vmdk, qcow2")
      ->check(CLI::IsMember({"raw", "vmdk", "qcow2"}));
  c->add_option("--vmdk-type", o->vmdk_type,
                "with --format vmdk: sparse (default), flat, vmfs or stream");
  c->add_flag("--to-vm", o->to_vm, "create a new VM (--name) on --source with the point's disks");
  c->add_option("--name", o->name, "the new VM's name for --to-vm");
  c->add_flag("--instant", o->instant,
              "with --to-vm: start the VM now, its disks read from the point (libvirt only; "
              "see vmbackup instant)");
  c->add_flag("--in-place", o->in_place,
              "write back into the VM the point came from (powered off), only what changed");
  c->add_option("--vm", o->vm,
                "with POINT latest: that VM's newest point; with --in-place: the VM to write");
  AddSourceOptions(c, o->source, "the host for --to-vm and --in-place", false);
  c->add_flag("--verify", o->verify, "re-read what was written and check it against the point");
  c->add_flag_function(
      "--no-progress", [o](int64_t) { o->progress = false; }, "no progress display on a terminal");
  c->add_flag("--ignore-damage", o->ignore_damage,
              "write what the repository can give; list damaged ranges instead of failing");
  Bind(c, exit_code, [o]() -> Status {
    int targets = int(!o->to_file.empty()) + int(o->to_vm) + int(o->in_place);
    if (targets != 1)
      return InvalidArgumentError("give exactly one of --to-file, --to-vm, --in-place");
    if (o->to_vm && o->name.empty()) return InvalidArgumentError("--to-vm needs --name NEW_VM");
    if (o->instant && !o->to_vm) return InvalidArgumentError("--instant goes with --to-vm");
    if (o->instant)
      return InstantRestore(o->repo, o->vm, o->name, o->source.source, o->source.disk_dir);
    engine::RestoreOptions ro;
    ro.verify = o->verify;
    ro.ignore_damage = o->ignore_damage;
    ro.lock_wait_seconds = o->repo.lock_wait;
    VMBACKUP_ASSIGN_OR_RETURN(ro.transports, hv::ParseTransportList(o->transport));
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(o->repo, false, "restore"));
    VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*x.repo, o->repo.point, o->vm));
    VMBACKUP_ASSIGN_OR_RETURN(repo::Point point, repo::LoadPoint(*x.repo, id));
    o->repo.vm = point.vm_name;
    ro.cancel = CancelOnSignals();
    engine::RestoreReport report;
    engine::DiskProgress progress;
    if (o->progress && o->to_file != "-") ro.progress = &progress;
    std::optional<Ticker> ticker;
    if (ro.progress) {
      ticker.emplace([&progress](double seconds) {
        uint64_t total = progress.total, done = std::min<uint64_t>(progress.done, total);
        double rate = seconds > 0 ? double(done) / seconds : 0;
        return StrFormat("restore disk %d %3d%% %s/%s %s ETA %.0fs", progress.device_key,
                         total ? int(done * 100 / total) : 100, HumanBytes(done).c_str(),
                         HumanBytes(total).c_str(), Rate(done, seconds).c_str(),
                         rate > 0 ? double(total - done) / rate : 0.0);
      });
    }
    Status s = AsJob(
        o->repo, *x.repo, "restore",
        [&]() -> Status {
          if (o->to_file == "-") {
            if (o->format != "raw")
              return InvalidArgumentError("standard output takes --format raw");
            StreamSink out(1);
            VMBACKUP_ASSIGN_OR_RETURN(
                report, engine::RestoreToStream(
                            *x.repo, point, o->disk, [&](auto d) { return out.Write(d); },
                            [&](uint64_t n) { return out.WriteZeros(n); }, ro));
            return out.Finish();
          }
          if (!o->to_file.empty()) {
            // Written under a temporary name and renamed at the end: an interrupted or failed
            // restore leaves nothing under the final name (and the next one removes the rest).
            VMBACKUP_ASSIGN_OR_RETURN(PartialFile out, PartialFile::Start(o->to_file));
            const bool raw = o->format == "raw";
            const std::string target = raw ? out.path() : out.Helper("raw");
            VMBACKUP_ASSIGN_OR_RETURN(report,
                                      engine::RestoreToFile(*x.repo, point, o->disk, target, ro));
            if (!raw) VMBACKUP_RETURN_IF_ERROR(ConvertRestored(target, out.path(), *o));
            VMBACKUP_RETURN_IF_ERROR(out.Commit());
            report.target = o->to_file;
            for (auto& d : report.disks)
              d.target = o->to_file + (raw ? "" : " (" + o->format + ")");
            return Status::Ok();
          }
          VMBACKUP_ASSIGN_OR_RETURN(auto hv, ConnectSource(o->source));
          if (o->to_vm) {
            VMBACKUP_ASSIGN_OR_RETURN(report,
                                      engine::RestoreToNewVm(*hv, *x.repo, point, o->name, ro));
          } else {
            VMBACKUP_ASSIGN_OR_RETURN(report,
                                      engine::RestoreInPlace(*hv, *x.repo, point, o->vm, ro));
          }
          return Status::Ok();
        },
        &report.point);
    ticker.reset();
    VMBACKUP_RETURN_IF_ERROR(s);
    FILE* out = o->to_file == "-" ? stderr : stdout;  // the disk itself went to stdout
    uint64_t damaged = 0;
    for (const auto& d : report.disks) damaged += d.damaged.total_bytes();
    if (damaged) {
      std::fprintf(stderr,
                   "vmbackup: WARNING: %s of the point could not be read from the repository "
                   "and was not restored (listed below); everything else was\n",
                   HumanBytes(damaged).c_str());
    }
    if (Flags().json) {
      std::fprintf(out, "%s\n", RestoreJson(report).dump(2).c_str());
    } else {
      PrintRestore(out, report);
    }
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
