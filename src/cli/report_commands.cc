#include "cli/report_commands.h"

#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "base/checked_math.h"
#include "base/extent_set.h"
#include "base/strings.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "repo/point.h"
#include "repo/tree.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

struct Usage {
  uint64_t points = 0;
  uint64_t logical = 0;  // non-zero chunk bytes over every point and disk, duplicates counted
  uint64_t unique = 0;   // raw bytes of the distinct chunks
  uint64_t stored = 0;   // their bytes in the packs (compressed, encrypted)
  std::unordered_set<repo::Id, repo::IdHash> seen;
};

// Adds every chunk of the point to `u` (distinct chunks counted once per Usage).
Status Account(repo::Repository& r, const repo::Point& p, Usage& u) {
  ++u.points;
  for (const repo::PointDisk& d : p.disks) {
    repo::TreeReader tree(r, d.tree, DivRoundUp(d.capacity, d.chunk_size));
    VMBACKUP_RETURN_IF_ERROR(tree.ForEachChunk(
        0, DivRoundUp(d.capacity, d.chunk_size), [&](uint64_t, const repo::Id& id) -> Status {
          auto loc = r.index().Find(id);
          const uint64_t raw = loc ? loc->raw_length : d.chunk_size;
          u.logical += raw;
          if (u.seen.insert(id).second) {
            u.unique += raw;
            if (loc) u.stored += loc->stored_length;
          }
          return Status::Ok();
        }));
  }
  return Status::Ok();
}

json UsageJson(const Usage& u) {
  return {{"points", u.points},
          {"logical_bytes", u.logical},
          {"unique_bytes", u.unique},
          {"stored_bytes", u.stored},
          {"dedup_ratio", u.unique ? double(u.logical) / double(u.unique) : 0.0},
          {"compression_ratio", u.stored ? double(u.unique) / double(u.stored) : 0.0}};
}

// The chunks that differ between two trees of the same shape.
Status DiffTrees(repo::Repository& r, const repo::PointDisk& a, const repo::PointDisk& b,
                 ExtentSet* out) {
  const uint64_t chunks = DivRoundUp(a.capacity, a.chunk_size);
  return repo::DiffTreeChunks(r, a.tree, b.tree, chunks, [&](uint64_t i, const repo::Id&) {
    out->Add(i * a.chunk_size, std::min(a.chunk_size, a.capacity - i * a.chunk_size));
    return Status::Ok();
  });
}

struct ReportOpts {
  RepoOpts repo;
  std::string a, b;
};

}  // namespace

void AddReportCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ReportOpts>();
  CLI::App* c = app.add_subcommand("stats", "repository size, data, deduplication, per VM");
  AddRepoOptions(c, o->repo);
  c->add_option("--vm", o->repo.vm, "only this VM");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(o->repo));
    uint64_t repo_bytes = 0, packs = 0;
    for (auto type :
         {storage::ObjectType::kPack, storage::ObjectType::kIndex, storage::ObjectType::kPoint}) {
      VMBACKUP_ASSIGN_OR_RETURN(auto objects, r->backend().List(type));
      for (const auto& obj : objects) repo_bytes += obj.size;
      if (type == storage::ObjectType::kPack) packs = objects.size();
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto ids, repo::ListPoints(*r));
    Usage all;
    std::map<std::string, Usage> per_vm;
    std::vector<std::string> unreadable;
    for (const auto& id : ids) {
      auto p = repo::LoadPoint(*r, id);
      if (!p) {
        unreadable.push_back(id);
        continue;
      }
      if (!o->repo.vm.empty() && p->vm_name != o->repo.vm) continue;
      VMBACKUP_RETURN_IF_ERROR(Account(*r, *p, all).WithContext("point " + id));
      VMBACKUP_RETURN_IF_ERROR(Account(*r, *p, per_vm[p->vm_name]).WithContext("point " + id));
    }
    if (!o->repo.vm.empty() && per_vm.empty())
      return NotFoundError("no VM '" + o->repo.vm + "' has restore points in this repository");
    json vms = json::object();
    for (const auto& [vm, u] : per_vm) vms[vm] = UsageJson(u);
    json j = UsageJson(all);
    j["repository_bytes"] = repo_bytes;
    j["packs"] = packs;
    j["vms"] = vms;
    j["unreadable_points"] = unreadable;
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    auto line = [](const char* who, const Usage& u) {
      std::printf("%-24s %6llu %12s %12s %12s %7.2fx %7.2fx\n", who, (unsigned long long)u.points,
                  HumanBytes(u.logical).c_str(), HumanBytes(u.unique).c_str(),
                  HumanBytes(u.stored).c_str(), u.unique ? double(u.logical) / double(u.unique) : 0,
                  u.stored ? double(u.unique) / double(u.stored) : 0);
    };
    std::printf("repository: %s in %llu packs (with index and point records)\n",
                HumanBytes(repo_bytes).c_str(), (unsigned long long)packs);
    std::printf("%-24s %6s %12s %12s %12s %8s %8s\n", "vm", "points", "data", "unique", "stored",
                "dedup", "compr");
    for (const auto& [vm, u] : per_vm) line(vm.c_str(), u);
    if (per_vm.size() != 1) line("(all)", all);
    for (const auto& id : unreadable) std::printf("unreadable point record: %s\n", id.c_str());
    return Status::Ok();
  });

  c = app.add_subcommand("diff", "what changed between two points, per disk");
  AddRepoOptions(c, o->repo);
  c->add_option("POINT_A", o->a, "the older point (id, prefix or latest)")->required();
  c->add_option("POINT_B", o->b, "the newer point")->required();
  c->add_option("--vm", o->repo.vm, "with latest: that VM's newest point");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(o->repo));
    VMBACKUP_ASSIGN_OR_RETURN(std::string ida, ResolvePoint(*r, o->a, o->repo.vm));
    VMBACKUP_ASSIGN_OR_RETURN(std::string idb, ResolvePoint(*r, o->b, o->repo.vm));
    VMBACKUP_ASSIGN_OR_RETURN(repo::Point a, repo::LoadPoint(*r, ida));
    VMBACKUP_ASSIGN_OR_RETURN(repo::Point b, repo::LoadPoint(*r, idb));
    json disks = json::array();
    std::map<int, const repo::PointDisk*> in_a;
    for (const auto& d : a.disks) in_a[d.key] = &d;
    for (const auto& db : b.disks) {
      json e = {{"device_key", db.key}, {"capacity", db.capacity}};
      auto it = in_a.find(db.key);
      if (it == in_a.end()) {
        e["status"] = "added";
      } else if (it->second->capacity != db.capacity || it->second->chunk_size != db.chunk_size) {
        e["status"] = "resized";
        e["old_capacity"] = it->second->capacity;
      } else {
        ExtentSet changed;
        VMBACKUP_RETURN_IF_ERROR(
            DiffTrees(*r, *it->second, db, &changed).WithContext(StrFormat("disk %d", db.key)));
        e["status"] = changed.empty() ? "same" : "changed";
        e["changed_bytes"] = changed.total_bytes();
        json areas = json::array();
        for (const Extent& x : changed)
          areas.push_back({{"offset", x.offset}, {"length", x.length}});
        e["changed"] = areas;
      }
      in_a.erase(db.key);
      disks.push_back(e);
    }
    for (const auto& [key, d] : in_a)
      disks.push_back({{"device_key", key}, {"capacity", d->capacity}, {"status", "removed"}});
    if (Flags().json) {
      std::printf("%s\n", json{{"from", ida}, {"to", idb}, {"disks", disks}}.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("from %s to %s\n", ida.c_str(), idb.c_str());
    for (const auto& e : disks) {
      std::printf("disk %d: %s", e["device_key"].get<int>(),
                  e["status"].get<std::string>().c_str());
      if (e.contains("changed_bytes")) {
        std::printf(", %s in %zu areas\n", HumanBytes(e["changed_bytes"].get<uint64_t>()).c_str(),
                    e["changed"].size());
        if (Flags().verbosity > 1) {
          for (const auto& x : e["changed"])
            std::printf("  %llu+%llu\n", (unsigned long long)x["offset"].get<uint64_t>(),
                        (unsigned long long)x["length"].get<uint64_t>());
        }
      } else {
        std::printf("\n");
      }
    }
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
