#include "repo/gc.h"

#include <ctime>
#include <map>
#include <set>
#include <unordered_set>

#include "base/checked_math.h"
#include "base/strings.h"
#include "repo/maintenance.h"
#include "repo/point.h"
#include "repo/tree.h"

namespace vmbackup::repo {
namespace {

using storage::ObjectType;

// Index entries per index file gc writes (about 11 MiB): big repositories get several files.
constexpr size_t kEntriesPerIndexFile = 100000;

struct PackUse {
  bool exists = false, indexed = false, unreadable = false;
  uint64_t size = 0, live_bytes = 0, blob_bytes = 0;
  int64_t mtime = 0;
  std::vector<PackEntry> entries, live;
};

// The blob bytes a pack holds. Usually those the index lists there; but a blob stored twice (two
// writers at once, neither aware of the other's upload) is listed in one pack only, and the
// other copy is garbage the listing does not show. It shows in the pack's size: what is beyond
// the listed blobs and a generous trailer (an entry is under 64 bytes) is such garbage.
uint64_t HeldBytes(const PackUse& u) {
  const uint64_t trailer = 64 * u.entries.size() + 4096;
  return u.size > u.blob_bytes + trailer ? u.size - trailer : u.blob_bytes;
}

Result<std::unordered_set<Id, IdHash>> MarkLive(Repository& repo, GcReport& report) {
  std::unordered_set<Id, IdHash> live;
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, ListPoints(repo));
  for (const auto& id : ids) {
    auto point = LoadPoint(repo, id);
    if (!point) {
      return point.error().WithContext("gc stops before deleting anything ('vmbackup forget " + id +
                                       "' removes a damaged point record)");
    }
    ++report.points;
    for (const PointDisk& d : point->disks) {
      Status s =
          ForEachTreeBlob(repo, d.tree, DivRoundUp(d.capacity, d.chunk_size),
                          [&](BlobType, const Id& blob) { return live.insert(blob).second; });
      if (!s.ok()) {
        return s.WithContext(
            StrFormat("gc stops before deleting anything: point %s disk %d", id.c_str(), d.key));
      }
    }
  }
  return live;
}

// Copies the live blobs of `pack` into `builder`, checking each (a damaged blob stops gc: it
// must not be copied as if it were good, nor its pack deleted).
Status CopyLive(Repository& repo, const Id& pack, const PackUse& use, PackBuilder& builder,
                const std::function<Status()>& save_if_full, GcReport& report) {
  VMBACKUP_ASSIGN_OR_RETURN(auto bytes, repo.backend().Load({ObjectType::kPack, pack.Hex()}));
  for (const PackEntry& e : use.live) {
    if (!RangeWithin(e.loc.offset, e.loc.stored_length, bytes.size())) {
      return CorruptionError("gc stops: blob " + e.id.Hex() + " lies past the end of pack " +
                             pack.Hex());
    }
    std::span<const uint8_t> stored(bytes.data() + e.loc.offset, e.loc.stored_length);
    auto plain = repo.codec().Decode(stored, BlobAad(e.loc.type, e.id), e.loc.raw_length);
    if (!plain || repo.codec().IdOf(*plain) != e.id) {
      return CorruptionError("gc stops: blob " + e.id.Hex() + " in pack " + pack.Hex() +
                             " is damaged (run verify)");
    }
    builder.Add(e.loc.type, e.id, stored, e.loc.raw_length);
    report.bytes_repacked += stored.size();
    VMBACKUP_RETURN_IF_ERROR(save_if_full());
  }
  return Status::Ok();
}

}  // namespace

Result<GcReport> CollectGarbage(Repository& repo, const GcOptions& o) {
  GcReport report;
  if (!repo.index_problems().empty()) {
    return CorruptionError("gc needs a readable index, and " + repo.index_problems().front() +
                           " (run check)");
  }
  storage::Backend& backend = repo.backend();
  const int64_t now = o.now ? o.now : int64_t(::time(nullptr));
  // A point record that vanished took the knowledge of what it needs with it: gc could free
  // data nobody can tell is still wanted. The user acknowledges the loss first.
  VMBACKUP_ASSIGN_OR_RETURN(auto vanished, VanishedPoints(repo, o.known_points));
  if (!vanished.empty()) {
    return FailedPreconditionError(StrFormat(
        "gc stops before deleting anything: restore point %s%s is gone from the repository but "
        "was never pruned or forgotten; run 'vmbackup check', then 'vmbackup forget %s' to "
        "acknowledge the loss",
        vanished[0].c_str(),
        vanished.size() > 1 ? StrFormat(" (and %zu more)", vanished.size() - 1).c_str() : "",
        vanished[0].c_str()));
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto old_index_files, backend.List(ObjectType::kIndex));
  VMBACKUP_ASSIGN_OR_RETURN(auto live, MarkLive(repo, report));
  report.live_blobs = live.size();

  std::map<Id, PackUse> packs;
  VMBACKUP_ASSIGN_OR_RETURN(auto pack_objects, backend.List(ObjectType::kPack));
  for (const auto& obj : pack_objects) {
    auto id = Id::FromHex(obj.name);
    if (!id) continue;  // not ours: left alone
    PackUse& u = packs[*id];
    u.exists = true;
    u.size = obj.size;
    u.mtime = obj.mtime;
  }
  repo.index().ForEach([&](const Id& id, const BlobLocation& loc) {
    PackUse& u = packs[loc.pack];
    u.indexed = true;
    u.entries.push_back({id, loc});
    u.blob_bytes += loc.stored_length;
    if (live.count(id)) {
      u.live.push_back({id, loc});
      u.live_bytes += loc.stored_length;
    }
  });

  // A pack no index lists is garbage only when nothing live is in it: a lost index file leaves
  // the packs it covered unindexed while points still need them (check --repair lists them
  // again from their trailers). So every unindexed pack's trailer is read first.
  std::unordered_set<Id, IdHash> in_unindexed;
  for (auto& [id, u] : packs) {
    if (!u.exists || u.indexed) continue;
    auto entries = ReadPackEntries(backend, repo.codec(), id);
    if (!entries) {
      u.unreadable = true;  // what it holds is unknown: it stays
      ++report.packs_unreadable;
      continue;
    }
    uint64_t needed = 0;
    for (const PackEntry& e : *entries) {
      if (repo.IsDamagedCopy(e.id, id)) continue;  // known bad: nothing to recover from it
      in_unindexed.insert(e.id);
      if (!live.count(e.id)) continue;
      auto loc = repo.index().Find(e.id);  // a listed copy in a pack that exists will do
      if (!loc || !packs.count(loc->pack) || !packs[loc->pack].exists) ++needed;
    }
    if (needed) {
      return CorruptionError(StrFormat(
          "gc stops before deleting anything: pack %s holds %llu blobs that restore points use, "
          "but no index lists it (an index file is missing or damaged): run 'vmbackup check "
          "--repair' first",
          id.Hex().c_str(), (unsigned long long)needed));
    }
  }
  // Live blobs that are nowhere: gc cannot lose them again, but says so.
  for (const Id& id : live) {
    if (!repo.index().Find(id) && !in_unindexed.count(id)) ++report.live_blobs_missing;
  }

  // Decide per pack.
  // Object Lock: a locked index file cannot go, so neither can the packs it lists (it would
  // point at nothing); a locked pack stays as it is.
  std::set<std::string> locked_index;
  std::set<Id> pinned;
  auto locked = [&](ObjectType type, const std::string& name) -> Result<bool> {
    if (repo.object_lock().seconds <= 0) return false;
    VMBACKUP_ASSIGN_OR_RETURN(int64_t until, backend.LockedUntil({type, name}));
    if (until <= now) return false;
    report.locked_until = std::max(report.locked_until, until);
    return true;
  };
  for (const auto& f : old_index_files) {
    VMBACKUP_ASSIGN_OR_RETURN(bool is_locked, locked(ObjectType::kIndex, f.name));
    if (!is_locked) continue;
    locked_index.insert(f.name);
    VMBACKUP_ASSIGN_OR_RETURN(auto data, backend.Load({ObjectType::kIndex, f.name}));
    VMBACKUP_ASSIGN_OR_RETURN(auto entries, Index::DecodeFile(repo.codec(), data));
    for (const PackEntry& e : entries) pinned.insert(e.loc.pack);
  }
  report.index_files_locked = locked_index.size();
  std::vector<PackEntry> keep;
  std::vector<Id> to_delete, to_repack;
  for (auto& [id, u] : packs) {
    if (!u.exists) {  // damaged repository: keep the entries so check and verify still see it
      keep.insert(keep.end(), u.live.begin(), u.live.end());
      continue;
    }
    ++report.packs;
    if (u.unreadable) continue;  // neither indexed nor readable: left for the user to look at
    const bool collectable =
        now - u.mtime >= o.grace_seconds &&
        (u.live.empty() || double(u.live_bytes) < o.repack_below * double(HeldBytes(u)));
    bool is_locked = false;
    if (collectable) {
      VMBACKUP_ASSIGN_OR_RETURN(is_locked, locked(ObjectType::kPack, id.Hex()));
      is_locked = is_locked || pinned.count(id);
    }
    if (now - u.mtime < o.grace_seconds) {
      ++report.packs_young;
      keep.insert(keep.end(), u.entries.begin(), u.entries.end());
    } else if (is_locked) {
      ++report.packs_locked;
      keep.insert(keep.end(), u.entries.begin(), u.entries.end());
    } else if (u.live.empty()) {
      to_delete.push_back(id);
    } else if (double(u.live_bytes) < o.repack_below * double(HeldBytes(u))) {
      to_repack.push_back(id);
    } else {
      // Dead blobs of a kept pack stay listed: the pack's garbage is measured by them next
      // time, and a backup may still deduplicate against them.
      keep.insert(keep.end(), u.entries.begin(), u.entries.end());
    }
  }
  report.packs_deleted = to_delete.size();
  report.packs_repacked = to_repack.size();
  uint64_t freed = 0;
  for (const Id& id : to_delete) freed += packs[id].size;
  for (const Id& id : to_repack) freed += packs[id].size;
  if (o.dry_run || (to_delete.empty() && to_repack.empty())) {
    for (const Id& id : to_repack) report.bytes_repacked += packs[id].live_bytes;
    report.bytes_freed = freed - std::min(freed, report.bytes_repacked);
    return report;
  }

  // 1. New packs with the live blobs of the packs being repacked.
  PackBuilder builder(repo.codec());
  auto save = [&]() -> Status {
    if (builder.count() == 0) return Status::Ok();
    PackBuilder::Finished f = builder.Finish();
    Status s = backend.Save({ObjectType::kPack, f.id.Hex()}, f.bytes);
    if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s.WithContext("gc: save a pack");
    keep.insert(keep.end(), f.entries.begin(), f.entries.end());
    return Status::Ok();
  };
  auto save_if_full = [&]() -> Status {
    return builder.bytes() >= Repository::kPackTarget ? save() : Status::Ok();
  };
  for (const Id& id : to_repack)
    VMBACKUP_RETURN_IF_ERROR(CopyLive(repo, id, packs[id], builder, save_if_full, report));
  VMBACKUP_RETURN_IF_ERROR(save());
  report.bytes_freed = freed - std::min(freed, report.bytes_repacked);

  // 2. New index files listing every kept blob.
  std::set<std::string> written;
  for (size_t first = 0; first < keep.size(); first += kEntriesPerIndexFile) {
    size_t end = std::min(keep.size(), first + kEntriesPerIndexFile);
    std::vector<PackEntry> part(keep.begin() + long(first), keep.begin() + long(end));
    std::vector<uint8_t> file = Index::EncodeFile(repo.codec(), part);
    std::string name = Sha256(file).Hex();
    Status s = backend.Save({ObjectType::kIndex, name}, file);
    if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s.WithContext("gc: save an index");
    written.insert(name);
    ++report.index_files_written;
  }
  // 3. The old index files.
  for (const auto& f : old_index_files) {
    if (written.count(f.name) || locked_index.count(f.name)) continue;
    VMBACKUP_RETURN_IF_ERROR(backend.Delete({ObjectType::kIndex, f.name}));
    ++report.index_files_deleted;
  }
  // 4. The dead packs (old packs no index lists, left by a crash, among them) and the repacked.
  to_delete.insert(to_delete.end(), to_repack.begin(), to_repack.end());
  std::set<std::string> gone;
  for (const Id& id : to_delete) {
    Status s = backend.Delete({ObjectType::kPack, id.Hex()});
    if (!s.ok() && s.code() != ErrorCode::kNotFound) return s.WithContext("gc: delete a pack");
    gone.insert(id.Hex().substr(0, 32));
  }
  // 5. Damage records of copies whose pack is gone: nothing left for them to keep out.
  for (const auto& [id, u] : packs) {
    if (!u.exists) gone.insert(id.Hex().substr(0, 32));
  }
  auto records = backend.List(ObjectType::kDamage);
  for (const auto& r : records ? *records : std::vector<storage::ObjectInfo>{}) {
    if (r.name.size() > 65 && gone.count(r.name.substr(65)))
      backend.Delete({ObjectType::kDamage, r.name}).IgnoreError();  // only a note; next gc
  }
  return report;
}

}  // namespace vmbackup::repo
