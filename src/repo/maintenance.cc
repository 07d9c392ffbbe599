#include "repo/maintenance.h"

#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/checked_math.h"
#include "base/strings.h"
#include "repo/marks.h"
#include "repo/object_lock.h"

namespace vmbackup::repo {

Result<VerifyReport> Verify(Repository& repo, std::vector<std::string> ids,
                            std::atomic<uint64_t>* checked) {
  if (ids.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(ids, ListPoints(repo));
  }
  VerifyReport report;
  std::unordered_map<Id, std::string, IdHash> verdict;  // "" = good
  for (const std::string& id : ids) {
    VMBACKUP_ASSIGN_OR_RETURN(Point p, LoadPoint(repo, id));
    ++report.points;
    for (const PointDisk& d : p.disks) {
      const uint64_t chunks = DivRoundUp(d.capacity, d.chunk_size);
      auto add_damage = [&](uint64_t offset, uint64_t length, const std::string& error) {
        if (!report.damaged.empty()) {
          DamagedRange& last = report.damaged.back();
          if (last.point == id && last.disk_key == d.key && last.offset + last.length == offset) {
            last.length += length;
            return;
          }
        }
        report.damaged.push_back({id, d.key, offset, length, error});
      };
      // Chunks are loaded in batches (one LoadInto: adjacent blobs in one read, runs in
      // parallel; a remote store would otherwise see one request per chunk, one at a time);
      // a batch that fails is loaded again chunk by chunk to tell which chunk is damaged.
      std::vector<std::pair<uint64_t, Id>> window;  // positions visited, in order
      std::vector<Id> pending;                      // of those, chunks without a verdict
      auto one = [&](const Id& chunk) {
        auto data = repo.Load(BlobType::kChunk, chunk);
        verdict[chunk] = data ? "" : data.error().message();
        ++report.chunks_checked;
        if (data) report.bytes_checked += data->size();
        if (data && checked) *checked += data->size();
      };
      auto flush = [&] {
        std::vector<std::vector<uint8_t>> bufs(pending.size());
        std::vector<std::span<uint8_t>> outs;
        bool sized = true;
        for (size_t k = 0; k < pending.size() && sized; ++k) {
          auto loc = repo.index().Find(pending[k]);
          sized = loc.has_value();
          if (sized) bufs[k].resize(loc->raw_length);
        }
        for (auto& b : bufs) outs.emplace_back(b);
        if (sized && repo.LoadInto(BlobType::kChunk, pending, outs).ok()) {
          for (size_t k = 0; k < pending.size(); ++k) {
            verdict[pending[k]] = "";
            ++report.chunks_checked;
            report.bytes_checked += bufs[k].size();
            if (checked) *checked += bufs[k].size();
          }
        } else {
          for (const Id& chunk : pending) one(chunk);
        }
        for (const auto& [i, chunk] : window) {
          const std::string& why = verdict[chunk];
          if (!why.empty())
            add_damage(i * d.chunk_size, std::min(d.chunk_size, d.capacity - i * d.chunk_size),
                       why);
        }
        window.clear();
        pending.clear();
      };
      TreeReader tree(repo, d.tree, chunks);
      Status walk = tree.ForEachChunk(0, chunks, [&](uint64_t i, const Id& chunk) {
        if (!verdict.count(chunk)) {
          verdict.emplace(chunk, "pending");
          pending.push_back(chunk);
        }
        window.push_back({i, chunk});
        if (pending.size() >= 128 || window.size() >= 4096) flush();
        return Status::Ok();
      });
      flush();
      if (!walk.ok()) {  // a tree page is damaged: what lies under it cannot be told apart
        add_damage(0, d.capacity, "tree: " + walk.message());
      }
    }
  }
  return report;
}

Result<std::vector<std::string>> VanishedPoints(Repository& repo,
                                                const std::set<std::string>& known) {
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, ListPoints(repo));
  const std::set<std::string> present(ids.begin(), ids.end());
  std::set<std::string> referred = known;
  // Prune wrote no tombstones before format version 3: parents pruned then would look lost.
  if (repo.version() >= 3) {
    for (const std::string& id : ids) {
      auto p = LoadPoint(repo, id);
      if (p && !p->parent.empty()) referred.insert(p->parent);
    }
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto forgotten, ForgottenPoints(repo));
  std::vector<std::string> out;
  for (const std::string& id : referred) {
    if (!present.count(id) && !forgotten.count(id)) out.push_back(id);
  }
  return out;
}

Result<CheckReport> Check(Repository& repo, const std::set<std::string>& known) {
  CheckReport report;
  VMBACKUP_ASSIGN_OR_RETURN(auto vanished, VanishedPoints(repo, known));
  for (const std::string& id : vanished) {
    report.problems.push_back("restore point " + id +
                              " is gone from the repository, but was never pruned or forgotten "
                              "(its record was lost): 'vmbackup forget " +
                              id + "' acknowledges it");
  }
  for (const std::string& p : repo.index_problems()) report.problems.push_back(p);
  storage::Backend& b = repo.backend();
  VMBACKUP_ASSIGN_OR_RETURN(auto packs, b.List(storage::ObjectType::kPack));
  std::map<std::string, uint64_t> pack_size;
  for (const auto& p : packs) pack_size[p.name] = p.size;
  report.packs = packs.size();
  // Every index entry points into a pack that exists.
  std::set<std::string> indexed_packs;
  repo.index().ForEach([&](const Id& id, const BlobLocation& loc) {
    ++report.index_entries;
    std::string pack = loc.pack.Hex();
    indexed_packs.insert(pack);
    auto it = pack_size.find(pack);
    if (it == pack_size.end()) {
      report.problems.push_back("blob " + id.Hex() + ": its pack " + pack + " is missing");
    } else if (loc.offset + loc.stored_length > it->second) {
      report.problems.push_back("blob " + id.Hex() + ": lies past the end of pack " + pack);
    }
  });
  // Every point's pages load and every chunk it names is indexed; what the points need is
  // kept, so that a pack no index lists can be told apart from garbage.
  std::unordered_set<Id, IdHash> needed;
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, ListPoints(repo));
  for (const std::string& id : ids) {
    auto p = LoadPoint(repo, id);
    if (!p) {
      report.problems.push_back(p.error().message() + " (vmbackup forget " + id +
                                " removes the record)");
      continue;
    }
    ++report.points;
    for (const PointDisk& d : p->disks) {
      const uint64_t chunks = DivRoundUp(d.capacity, d.chunk_size);
      uint64_t missing = 0;
      Status walk = ForEachTreeBlob(repo, d.tree, chunks, [&](BlobType type, const Id& blob) {
        needed.insert(blob);
        if (type == BlobType::kChunk) {
          auto loc = repo.index().Find(blob);
          if (!loc || loc->type != BlobType::kChunk || !pack_size.count(loc->pack.Hex())) ++missing;
        }
        return true;  // each point's own count of missing chunks: shared pages walked again
      });
      if (!walk.ok()) {
        report.problems.push_back(
            StrFormat("point %s disk %d: %s", id.c_str(), d.key, walk.message().c_str()));
      } else if (missing) {
        report.problems.push_back(StrFormat("point %s disk %d: %llu chunks are missing", id.c_str(),
                                            d.key, (unsigned long long)missing));
      }
    }
  }
  // Every pack's trailer agrees with the index.
  for (const auto& [name, size] : pack_size) {
    auto pack_id = Id::FromHex(name);
    if (!pack_id) {
      report.problems.push_back("pack " + name + ": not a pack name");
      continue;
    }
    auto entries = ReadPackEntries(b, repo.codec(), *pack_id);
    if (!entries) {
      report.problems.push_back(entries.error().message());
      continue;
    }
    if (!indexed_packs.count(name)) {
      uint64_t used = 0;
      for (const PackEntry& e : *entries) {
        auto loc = repo.index().Find(e.id);  // a copy elsewhere that is listed will do
        used += needed.count(e.id) && (!loc || !pack_size.count(loc->pack.Hex()));
      }
      if (used) {
        report.problems.push_back(StrFormat(
            "pack %s holds %llu blobs that restore points need, but no index lists it: run "
            "'vmbackup check --repair' (gc refuses to run until then)",
            name.c_str(), (unsigned long long)used));
      } else {
        report.notes.push_back("pack " + name +
                               " is in no index and holds nothing a restore point needs (left by "
                               "an interrupted backup; gc removes it)");
      }
      continue;
    }
    for (const PackEntry& e : *entries) {
      auto loc = repo.index().Find(e.id);
      if (!loc) {
        report.problems.push_back("pack " + name + " holds blob " + e.id.Hex() +
                                  " that no index lists");
      } else if (loc->pack == *pack_id && loc->offset != e.loc.offset) {
        report.problems.push_back("blob " + e.id.Hex() + ": index and pack " + name +
                                  " disagree on its offset");
      }
    }
  }
  // Object Lock: every object a point needs (the point record too) must stay locked for the
  // policy's period after the point was made.
  if (repo.object_lock().seconds > 0) {
    VMBACKUP_ASSIGN_OR_RETURN(auto point_ids, ListPoints(repo));
    for (const std::string& id : point_ids) {
      auto point = LoadPoint(repo, id);
      if (!point) continue;  // reported above
      auto made = ParseTimeOrAge(point->created, 0);
      if (!made) {
        report.problems.push_back("restore point " + id + ": no creation time for its lock");
        continue;
      }
      const int64_t lock_end = *made + repo.object_lock().seconds;
      auto locked = b.LockedUntil({storage::ObjectType::kPoint, id});
      if (locked && *locked < lock_end) {
        report.problems.push_back(StrFormat(
            "restore point %s is locked until %s, not %s (Object Lock)", id.c_str(),
            *locked ? UtcRfc3339(*locked).c_str() : "never", UtcRfc3339(lock_end).c_str()));
      }
      VMBACKUP_ASSIGN_OR_RETURN(auto short_locks, ShortLocks(repo, *point, lock_end));
      for (auto& text : short_locks) report.problems.push_back(std::move(text));
    }
  }
  return report;
}

Result<RepairReport> RepairIndex(Repository& repo) {
  RepairReport report;
  storage::Backend& b = repo.backend();
  VMBACKUP_ASSIGN_OR_RETURN(auto packs, b.List(storage::ObjectType::kPack));
  std::vector<PackEntry> missing;
  for (const auto& p : packs) {
    auto id = Id::FromHex(p.name);
    if (!id) continue;
    auto entries = ReadPackEntries(b, repo.codec(), *id);
    ++report.packs_read;
    if (!entries) {
      report.unreadable_packs.push_back(entries.error().message());
      continue;
    }
    for (const PackEntry& e : *entries) {
      if (repo.IsDamagedCopy(e.id, *id)) continue;  // never listed again
      auto loc = repo.index().Find(e.id);
      if (!loc) missing.push_back(e);
    }
  }
  // New index files first, so a crash never leaves a blob unlisted that was listed before.
  constexpr size_t kPerFile = 100000;
  for (size_t first = 0; first < missing.size(); first += kPerFile) {
    std::vector<PackEntry> part(missing.begin() + long(first),
                                missing.begin() + long(std::min(missing.size(), first + kPerFile)));
    std::vector<uint8_t> file = Index::EncodeFile(repo.codec(), part);
    Status s = b.Save({storage::ObjectType::kIndex, Sha256(file).Hex()}, file);
    if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s.WithContext("save an index");
    report.entries_added += part.size();
  }
  for (const std::string& name : repo.damaged_index_files()) {
    Status s = b.Delete({storage::ObjectType::kIndex, name});
    if (!s.ok() && s.code() != ErrorCode::kNotFound) return s.WithContext("remove index " + name);
    report.index_files_removed.push_back(name);
  }
  // Index files that list copies recorded as damaged are written again without them (the new
  // file first): the damaged copies are dropped for good, and a backup stores good ones.
  VMBACKUP_ASSIGN_OR_RETURN(auto files, b.List(storage::ObjectType::kIndex));
  for (const auto& f : files) {
    auto data = b.Load({storage::ObjectType::kIndex, f.name});
    if (!data) continue;
    auto entries = Index::DecodeFile(repo.codec(), *data);
    if (!entries) continue;
    std::vector<PackEntry> good;
    for (const PackEntry& e : *entries)
      if (!repo.IsDamagedCopy(e.id, e.loc.pack)) good.push_back(e);
    if (good.size() == entries->size()) continue;
    if (!good.empty()) {
      std::vector<uint8_t> file = Index::EncodeFile(repo.codec(), good);
      Status s = b.Save({storage::ObjectType::kIndex, Sha256(file).Hex()}, file);
      if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s.WithContext("save an index");
    }
    VMBACKUP_RETURN_IF_ERROR(b.Delete({storage::ObjectType::kIndex, f.name}));
    report.damaged_copies_dropped += entries->size() - good.size();
  }
  return report;
}

}  // namespace vmbackup::repo
