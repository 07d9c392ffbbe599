#include "cli/repo_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "catalog/catalog.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "io/posix_file.h"
#include "location/location.h"
#include "repo/gc.h"
#include "repo/lock.h"
#include "repo/maintenance.h"
#include "repo/marks.h"
#include "repo/point.h"
#include "repo/prune.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

Status NoSuchVm(const std::string& vm, const std::vector<std::string>& vms) {
  std::string known;
  for (const auto& v : vms) known += (known.empty() ? "" : ", ") + v;
  return NotFoundError("no VM '" + vm + "' has restore points in this repository" +
                       (known.empty() ? std::string(" (it has none)") : " (VMs: " + known + ")"));
}

// A point as the commands show it: the field names every command uses (id, vm as a string,
// disks as an array with device_key), not the record's own layout (docs/repository-format.md).
json PointJson(const repo::Point& p) {
  json j = repo::PointToJson(p);
  j["vm"] = p.vm_name;
  j["vm_id"] = p.vm_id;
  for (auto& d : j["disks"]) {
    d["device_key"] = d["key"];
    d.erase("key");
  }
  return j;
}

// "30 days", "12 h", "90 s".
std::string Period(int64_t s) {
  if (s % 86400 == 0) return StrFormat("%lld days", (long long)(s / 86400));
  if (s % 3600 == 0) return StrFormat("%lld h", (long long)(s / 3600));
  return StrFormat("%lld s", (long long)s);
}

json LockedJson(const std::vector<std::pair<std::string, int64_t>>& locked) {
  json out = json::array();
  for (const auto& [id, until] : locked) out.push_back({{"id", id}, {"until", UtcRfc3339(until)}});
  return out;
}

}  // namespace

void AddRepoCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<RepoOpts>();
  auto common = [o](CLI::App* c) { AddRepoOptions(c, *o); };

  CLI::App* c = app.add_subcommand("init", "create a repository");
  common(c);
  c->add_option("--chunk-size", o->chunk_size, "chunk size (power of two, 4K-4M; default 64K)");
  c->add_flag("--encrypt", o->encrypt,
              "AES-256-GCM; needs --key-file (created if missing) or a passphrase");
  c->add_option("--object-lock", o->object_lock,
                "S3 Object Lock: every object a point needs stays undeletable this long after the "
                "point (days, or with a unit: 12h, 2w)");
  c->add_option("--object-lock-mode", o->object_lock_mode,
                "governance (default: lifted only with a special permission) or compliance "
                "(by nobody)")
      ->check(CLI::IsMember({"governance", "compliance"}));
  Bind(c, exit_code, [o]() -> Status {
    const std::string dir = RepoLocation(*o);
    location::Options where{o->s3_ca_file};
    if (dir.empty())
      return InvalidArgumentError("no repository: give --repo DIR or set VMBACKUP_REPO");
    repo::InitOptions io;
    VMBACKUP_ASSIGN_OR_RETURN(io.chunk_size, ParseSize(o->chunk_size));
    io.encrypt = o->encrypt;
    if (!o->object_lock.empty()) {
      // A bare number is days, as S3 counts retention.
      const bool bare = o->object_lock.find_first_not_of("0123456789") == std::string::npos;
      VMBACKUP_ASSIGN_OR_RETURN(io.object_lock.seconds,
                                ParseDuration(bare ? o->object_lock + "d" : o->object_lock));
      if (io.object_lock.seconds <= 0)
        return InvalidArgumentError("--object-lock needs a period longer than nothing");
      io.object_lock.mode = o->object_lock_mode == "compliance" ? storage::LockMode::kCompliance
                                                                : storage::LockMode::kGovernance;
      where.object_lock = true;
    } else if (!o->object_lock_mode.empty()) {
      return InvalidArgumentError("--object-lock-mode needs --object-lock");
    }
    if (io.encrypt) {
      VMBACKUP_ASSIGN_OR_RETURN(io.key, KeysOrPrompt(*o, /*new_key=*/true));
    } else {
      VMBACKUP_ASSIGN_OR_RETURN(io.key, Keys(*o));
      if (!io.key.key_file.empty() || !o->passphrase_file.empty() || !o->password_command.empty())
        return InvalidArgumentError("a key was given without --encrypt");
      io.key = {};  // VMBACKUP_PASSPHRASE alone does not ask for encryption
    }
    // A failed init leaves nothing behind: not the folder, not its sub-folders, not a key file.
    const bool dir_existed = location::IsRemote(dir) || io::PathExists(dir);
    const bool key_existed = io.key.key_file.empty() || io::PathExists(io.key.key_file);
    std::unique_ptr<repo::Repository> r;
    Status made = [&]() -> Status {
      VMBACKUP_ASSIGN_OR_RETURN(auto backend, location::Create(dir, where));
      VMBACKUP_RETURN_IF_ERROR(repo::Repository::Init(*backend, io));
      VMBACKUP_ASSIGN_OR_RETURN(r, repo::Repository::Open(std::move(backend), io.key));
      return Status::Ok();
    }();
    if (!made.ok()) {
      if (made.code() != ErrorCode::kAlreadyExists) {
        location::RemoveNew(dir, where, /*remove_folder=*/!dir_existed);
        if (!key_existed) ::unlink(io.key.key_file.c_str());
      }
      return made;
    }
    if (Flags().json) {
      std::printf("%s\n", json{{"repository", dir},
                               {"id", r->id()},
                               {"chunk_size", r->chunk_size()},
                               {"encrypted", r->encrypted()}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf(
          "created repository %s at %s (chunk size %s%s%s)\n", r->id().c_str(), dir.c_str(),
          HumanBytes(r->chunk_size()).c_str(), r->encrypted() ? ", encrypted" : "",
          r->object_lock().seconds > 0
              ? StrFormat(", Object Lock %s for %s",
                          o->object_lock_mode.empty() ? "governance" : o->object_lock_mode.c_str(),
                          Period(r->object_lock().seconds).c_str())
                    .c_str()
              : "");
    }
    return Status::Ok();
  });

  c = app.add_subcommand("list", "list restore points (oldest first)");
  common(c);
  c->add_option("--vm", o->vm, "only this VM");
  c->add_option("--since", o->since,
                "only points created at or after this time: 2026-11-22, 2026-11-22T08:00+02:00 "
                "(no zone: UTC), or an age such as 7d");
  c->add_option("--until", o->until, "only points created before this time (the same forms)");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *r));
    // Bounds are checked before anything else: a typo is an error, never "no filter".
    auto bound = [](const std::string& text) -> Result<std::string> {
      if (text.empty()) return std::string();
      VMBACKUP_ASSIGN_OR_RETURN(int64_t t, ParseTimeOrAge(text, int64_t(::time(nullptr))));
      return UtcRfc3339(t);
    };
    VMBACKUP_ASSIGN_OR_RETURN(std::string since, bound(o->since));
    VMBACKUP_ASSIGN_OR_RETURN(std::string until, bound(o->until));
    if (!o->vm.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(auto vms, cat->Vms());
      if (std::find(vms.begin(), vms.end(), o->vm) == vms.end()) return NoSuchVm(o->vm, vms);
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto rows, cat->Points({o->vm, since, until}));
    std::reverse(rows.begin(), rows.end());
    json j = json::array();
    for (const auto& p : rows) {
      json disks = json::array();
      VMBACKUP_ASSIGN_OR_RETURN(auto drows, cat->Disks(p.id));
      for (const auto& d : drows) {
        disks.push_back({{"device_key", d.key},
                         {"label", d.label},
                         {"capacity", d.capacity},
                         {"change_id", d.change_id},
                         {"transport", d.transport}});
      }
      j.push_back({{"id", p.id},
                   {"vm", p.vm_name},
                   {"vm_id", p.vm_id},
                   {"created", p.created},
                   {"parent", p.parent.empty() ? json(nullptr) : json(p.parent)},
                   {"consistency", p.consistency},
                   {"disks", disks},
                   {"bytes_new", p.bytes_new},
                   {"protected", p.is_protected},
                   {"tested", p.tested_time.empty() ? json(nullptr)
                                                    : json{{"time", p.tested_time},
                                                           {"ok", p.tested_ok},
                                                           {"summary", p.tested_summary}}}});
    }
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("%-33s %-20s %-21s %5s %10s %s\n", "point", "vm", "created", "disks", "new",
                "flags");
    for (const auto& p : rows) {
      std::string flags = p.is_protected ? "protected" : "";
      if (!p.tested_time.empty()) {  // "tested ok 2026-11-30" (the latest test-restore)
        flags += std::string(flags.empty() ? "" : ", ") + "tested " +
                 (p.tested_ok ? "ok " : "FAILED ") + p.tested_time.substr(0, 10);
      }
      std::printf("%-33s %-20s %-21s %5d %10s %s\n", p.id.c_str(), p.vm_name.c_str(),
                  p.created.c_str(), p.disks, HumanBytes(p.bytes_new).c_str(), flags.c_str());
    }
    return Status::Ok();
  });

  c = app.add_subcommand("jobs", "the job history (newest first)");
  common(c);
  c->add_option("--vm", o->vm, "only this VM's jobs");
  c->add_option("--limit", o->limit, "at most this many (default 50)");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *r));
    VMBACKUP_ASSIGN_OR_RETURN(auto jobs, cat->Jobs(o->vm, o->limit));
    if (Flags().json) {
      json j = json::array();
      for (const auto& x : jobs) {
        j.push_back({{"id", x.id},
                     {"kind", x.kind},
                     {"vm", x.vm},
                     {"started", x.started},
                     {"finished", x.finished},
                     {"status", x.status},
                     {"message", x.message},
                     {"point", x.point}});
      }
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("%5s %-8s %-16s %-21s %-12s %s\n", "job", "kind", "vm", "started", "status",
                "point / message");
    for (const auto& x : jobs) {
      std::printf("%5lld %-8s %-16s %-21s %-12s %s\n", (long long)x.id, x.kind.c_str(),
                  x.vm.c_str(), x.started.c_str(), x.status.c_str(),
                  (x.point.empty() ? x.message : x.point).c_str());
    }
    return Status::Ok();
  });

  c = app.add_subcommand("show", "one restore point in detail");
  common(c);
  c->add_option("POINT", o->point)->required();
  c->add_option("--vm", o->vm, "with POINT latest: that VM's newest point");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r, o->point, o->vm));
    VMBACKUP_ASSIGN_OR_RETURN(repo::Point p, repo::LoadPoint(*r, id));
    std::printf("%s\n", PointJson(p).dump(2).c_str());
    return Status::Ok();
  });

  c = app.add_subcommand("verify", "re-read and re-hash every chunk of the points (all, or one)");
  common(c);
  c->add_option("POINT", o->point, "only this point");
  c->add_option("--vm", o->vm, "with POINT latest: that VM's newest point");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    std::vector<std::string> ids;
    if (!o->point.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r, o->point, o->vm));
      ids.push_back(id);
    }
    std::atomic<uint64_t> checked{0};
    Result<repo::VerifyReport> result = [&] {
      Ticker ticker([&](double s) {
        return "verify: " + HumanBytes(checked) + " re-read and re-hashed, " +
               (s > 0 ? HumanBytes(uint64_t(double(checked) / s)) : std::string("0 B")) + "/s";
      });
      return repo::Verify(*r, ids, &checked);
    }();
    VMBACKUP_ASSIGN_OR_RETURN(repo::VerifyReport v, std::move(result));
    json damaged = json::array();
    for (const auto& d : v.damaged) {
      damaged.push_back({{"point", d.point},
                         {"device_key", d.disk_key},
                         {"offset", d.offset},
                         {"length", d.length},
                         {"error", d.error}});
    }
    if (Flags().json) {
      std::printf("%s\n", json{{"points", v.points},
                               {"chunks_checked", v.chunks_checked},
                               {"bytes_checked", v.bytes_checked},
                               {"damaged", damaged}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf("verified %llu points: %llu chunks, %s re-read and re-hashed\n",
                  (unsigned long long)v.points, (unsigned long long)v.chunks_checked,
                  HumanBytes(v.bytes_checked).c_str());
      for (const auto& d : v.damaged) {
        std::printf("DAMAGED: point %s disk %d bytes %llu+%llu: %s\n", d.point.c_str(), d.disk_key,
                    (unsigned long long)d.offset, (unsigned long long)d.length, d.error.c_str());
      }
      if (!v.damaged.empty()) {
        std::printf(
            "the damage is recorded in the repository: the next backup that reads the same data "
            "stores good copies ('vmbackup restore --ignore-damage' restores the rest now)\n");
      }
    }
    if (!v.damaged.empty()) {
      return CorruptionError(StrFormat("%zu damaged ranges", v.damaged.size()));
    }
    return Status::Ok();
  });

  c = app.add_subcommand("check", "check the repository's structure (references, index, packs)");
  common(c);
  c->add_flag("--repair", o->repair,
              "first rebuild the index from the pack trailers (exclusive lock)");
  c->add_option("--lock-wait", o->lock_wait, "seconds to wait for other users of the repository");
  Bind(c, exit_code, [o]() -> Status {
    if (o->repair) {
      VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(*o, true, "check --repair"));
      repo::RepairReport rr;
      VMBACKUP_RETURN_IF_ERROR(AsJob(*o, *x.repo, "repair", [&]() -> Status {
        VMBACKUP_ASSIGN_OR_RETURN(rr, repo::RepairIndex(*x.repo));
        return Status::Ok();
      }));
      std::fprintf(stderr,
                   "repair: read %llu pack trailers, listed %llu blobs again, removed %zu "
                   "damaged index files, dropped %llu damaged copies from the index\n",
                   (unsigned long long)rr.packs_read, (unsigned long long)rr.entries_added,
                   rr.index_files_removed.size(), (unsigned long long)rr.damaged_copies_dropped);
      for (const auto& u : rr.unreadable_packs)
        std::fprintf(stderr, "repair: LOST: %s\n", u.c_str());
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *r));
    VMBACKUP_ASSIGN_OR_RETURN(auto known, cat->KnownPoints());
    VMBACKUP_ASSIGN_OR_RETURN(repo::CheckReport report, repo::Check(*r, known));
    if (Flags().json) {
      std::printf("%s\n", json{{"packs", report.packs},
                               {"index_entries", report.index_entries},
                               {"points", report.points},
                               {"problems", report.problems},
                               {"notes", report.notes}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf("checked %llu packs, %llu index entries, %llu points\n",
                  (unsigned long long)report.packs, (unsigned long long)report.index_entries,
                  (unsigned long long)report.points);
      for (const auto& n : report.notes) std::printf("note: %s\n", n.c_str());
      for (const auto& p : report.problems) std::printf("PROBLEM: %s\n", p.c_str());
    }
    if (!report.problems.empty())
      return CorruptionError(StrFormat("%zu problems", report.problems.size()));
    return Status::Ok();
  });

  c = app.add_subcommand("prune", "remove restore points the keep rules do not keep");
  common(c);
  c->add_option("--vm", o->vm, "only this VM's points");
  c->add_option("--keep-last", o->keep.last, "the newest N points");
  c->add_option("--keep-hourly", o->keep.hourly, "the newest point of each of the last N hours");
  c->add_option("--keep-daily", o->keep.daily, "... of each of the last N days");
  c->add_option("--keep-weekly", o->keep.weekly, "... of each of the last N ISO weeks");
  c->add_option("--keep-monthly", o->keep.monthly, "... of each of the last N months");
  c->add_option("--keep-yearly", o->keep.yearly, "... of each of the last N years");
  c->add_flag("--dry-run", o->dry_run, "show what would be removed, remove nothing");
  c->add_option("--lock-wait", o->lock_wait, "seconds to wait for other users of the repository");
  Bind(c, exit_code, [o]() -> Status {
    // A wrong policy is refused before anything is locked or recorded.
    VMBACKUP_RETURN_IF_ERROR(repo::PlanPrune({}, o->keep).status());
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(*o, true, "prune"));
    if (!o->vm.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *x.repo));
      VMBACKUP_ASSIGN_OR_RETURN(auto vms, cat->Vms());
      if (std::find(vms.begin(), vms.end(), o->vm) == vms.end()) return NoSuchVm(o->vm, vms);
    }
    repo::PruneReport r;
    auto run = [&]() -> Status {
      VMBACKUP_ASSIGN_OR_RETURN(r, repo::Prune(*x.repo, o->keep, o->vm, o->dry_run));
      return Status::Ok();
    };
    VMBACKUP_RETURN_IF_ERROR(o->dry_run ? run() : AsJob(*o, *x.repo, "prune", run));
    if (Flags().json) {
      json points = json::array();
      for (const auto& d : r.decisions) {
        points.push_back({{"id", d.id}, {"vm", d.vm}, {"keep", d.keep}, {"reasons", d.reasons}});
      }
      std::printf("%s\n", json{{"dry_run", o->dry_run},
                               {"points", points},
                               {"removed", r.removed},
                               {"unreadable", r.unreadable},
                               {"locked", LockedJson(r.locked)}}
                              .dump(2)
                              .c_str());
    } else {
      for (const auto& d : r.decisions) {
        std::string why;
        for (const auto& reason : d.reasons) why += (why.empty() ? "" : ", ") + reason;
        std::printf("%-6s %-33s %-20s %s\n",
                    d.keep ? "keep" : (o->dry_run ? "would remove" : "remove"), d.id.c_str(),
                    d.vm.c_str(), why.c_str());
      }
      for (const auto& u : r.unreadable) std::printf("kept (unreadable): %s\n", u.c_str());
      for (const auto& [id, until] : r.locked)
        std::printf("kept (locked until %s): %s\n", UtcRfc3339(until).c_str(), id.c_str());
      std::printf(
          "%s %llu of %zu points%s\n", o->dry_run ? "would remove" : "removed",
          (unsigned long long)(o->dry_run ? std::count_if(r.decisions.begin(), r.decisions.end(),
                                                          [](const auto& d) { return !d.keep; })
                                          : r.removed),
          r.decisions.size(), o->dry_run ? "" : "; run gc to reclaim their space");
    }
    return Status::Ok();
  });

  c = app.add_subcommand("gc", "delete data no restore point uses; repack mostly-unused packs");
  common(c);
  c->add_option("--grace", o->grace,
                "leave packs younger than this alone (default 1h; 0 for none)");
  c->add_option("--repack-below", o->repack_below,
                "repack packs whose live share is under this fraction (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_flag("--dry-run", o->dry_run, "show what would be deleted, delete nothing");
  c->add_option("--lock-wait", o->lock_wait, "seconds to wait for other users of the repository");
  Bind(c, exit_code, [o]() -> Status {
    repo::GcOptions g;
    VMBACKUP_ASSIGN_OR_RETURN(g.grace_seconds, ParseDuration(o->grace));
    g.repack_below = o->repack_below;
    g.dry_run = o->dry_run;
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(*o, true, "gc"));
    {
      VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *x.repo));
      VMBACKUP_ASSIGN_OR_RETURN(g.known_points, cat->KnownPoints());
    }
    repo::GcReport r;
    auto run = [&]() -> Status {
      VMBACKUP_ASSIGN_OR_RETURN(r, repo::CollectGarbage(*x.repo, g));
      return Status::Ok();
    };
    VMBACKUP_RETURN_IF_ERROR(o->dry_run ? run() : AsJob(*o, *x.repo, "gc", run));
    json j = {{"dry_run", o->dry_run},
              {"points", r.points},
              {"live_blobs", r.live_blobs},
              {"packs", r.packs},
              {"packs_deleted", r.packs_deleted},
              {"packs_repacked", r.packs_repacked},
              {"packs_young", r.packs_young},
              {"bytes_freed", r.bytes_freed},
              {"bytes_repacked", r.bytes_repacked},
              {"index_files_written", r.index_files_written},
              {"index_files_deleted", r.index_files_deleted},
              {"packs_locked", r.packs_locked},
              {"index_files_locked", r.index_files_locked},
              {"locked_until", r.locked_until ? UtcRfc3339(r.locked_until) : ""}};
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf(
          "%s: %llu points use %llu blobs; of %llu packs, %llu deleted and %llu repacked (%s "
          "copied), %llu too young to touch; %s freed\n",
          o->dry_run ? "gc (dry run)" : "gc", (unsigned long long)r.points,
          (unsigned long long)r.live_blobs, (unsigned long long)r.packs,
          (unsigned long long)r.packs_deleted, (unsigned long long)r.packs_repacked,
          HumanBytes(r.bytes_repacked).c_str(), (unsigned long long)r.packs_young,
          HumanBytes(r.bytes_freed).c_str());
      if (r.packs_locked + r.index_files_locked) {
        std::printf(
            "kept %llu packs and %llu index files still locked (Object Lock) until %s at the "
            "latest: a later gc takes them\n",
            (unsigned long long)r.packs_locked, (unsigned long long)r.index_files_locked,
            UtcRfc3339(r.locked_until).c_str());
      }
    }
    return Status::Ok();
  });

  c = app.add_subcommand("protect", "keep a restore point from prune (or, with --remove, no more)");
  common(c);
  c->add_option("POINT", o->point)->required();
  c->add_option("--vm", o->vm, "with POINT latest: that VM's newest point");
  c->add_flag("--remove", o->remove, "take the protection away");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r, o->point, o->vm));
    VMBACKUP_RETURN_IF_ERROR(o->remove ? repo::UnprotectPoint(*r, id) : repo::ProtectPoint(*r, id));
    std::printf("%s %s\n", o->remove ? "unprotected" : "protected", id.c_str());
    return Status::Ok();
  });

  c = app.add_subcommand("forget",
                         "remove restore points by name (their data goes at the next gc)");
  common(c);
  c->add_option("POINT", o->points, "points to remove (ids, unique prefixes, or latest)");
  c->add_option("--vm", o->vm, "with POINT latest: that VM's newest point");
  c->add_flag("--damaged", o->damaged, "every point record that cannot be read");
  c->add_flag("--dry-run", o->dry_run, "show what would be removed, remove nothing");
  c->add_option("--lock-wait", o->lock_wait, "seconds to wait for other users of the repository");
  Bind(c, exit_code, [o]() -> Status {
    if (o->points.empty() && !o->damaged)
      return InvalidArgumentError("name the points to forget, or give --damaged");
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(*o, true, "forget"));
    VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(*o, *x.repo));
    VMBACKUP_ASSIGN_OR_RETURN(auto known, cat->KnownPoints());
    VMBACKUP_ASSIGN_OR_RETURN(auto vanished, repo::VanishedPoints(*x.repo, known));
    // What goes: named points (a lost one is acknowledged: only its tombstone is written), and
    // with --damaged every record that cannot be read.
    std::vector<std::pair<std::string, std::string>> victims;  // id, what it is
    for (const std::string& name : o->points) {
      if (std::find(vanished.begin(), vanished.end(), name) != vanished.end()) {
        victims.push_back({name, "lost"});
        continue;
      }
      VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*x.repo, name, o->vm));
      victims.push_back({id, repo::LoadPoint(*x.repo, id) ? "point" : "damaged"});
    }
    if (o->damaged) {
      VMBACKUP_ASSIGN_OR_RETURN(auto ids, repo::ListPoints(*x.repo));
      for (const auto& id : ids) {
        auto p = repo::LoadPoint(*x.repo, id);
        if (!p && p.error().code() != ErrorCode::kNotFound) victims.push_back({id, "damaged"});
      }
    }
    json out = json::array();
    auto run = [&]() -> Status {
      for (const auto& [id, what] : victims) {
        if (!o->dry_run) VMBACKUP_RETURN_IF_ERROR(repo::ForgetPoint(*x.repo, id, "forget"));
        out.push_back({{"id", id}, {"was", what}});
        if (!Flags().json) {
          std::printf("%s %s (%s)\n", o->dry_run ? "would forget" : "forgot", id.c_str(),
                      what == "lost" ? "lost record: acknowledged" : what.c_str());
        }
      }
      return Status::Ok();
    };
    VMBACKUP_RETURN_IF_ERROR(o->dry_run ? run() : AsJob(*o, *x.repo, "forget", run));
    if (Flags().json)
      std::printf("%s\n", json{{"dry_run", o->dry_run}, {"points", out}}.dump(2).c_str());
    if (victims.empty() && !Flags().json) std::printf("nothing to forget\n");
    if (!o->dry_run && !victims.empty() && !Flags().json)
      std::printf("run gc to reclaim the space only they used\n");
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
