#include "repo/object_lock.h"

#include <atomic>
#include <ctime>
#include <mutex>
#include <set>
#include <unordered_set>

#include "base/checked_math.h"
#include "base/strings.h"
#include "base/worker_pool.h"
#include "repo/tree.h"

namespace vmbackup::repo {
namespace {

using storage::ObjectRef;
using storage::ObjectType;

// The objects `point` needs: the packs of every blob of its trees, the config and the keys.
Result<std::vector<ObjectRef>> NeededObjects(Repository& repo, const Point& point) {
  std::unordered_set<Id, IdHash> blobs;
  std::set<std::string> packs;
  for (const PointDisk& d : point.disks) {
    VMBACKUP_RETURN_IF_ERROR(ForEachTreeBlob(repo, d.tree, DivRoundUp(d.capacity, d.chunk_size),
                                             [&](BlobType, const Id& blob) {
                                               if (!blobs.insert(blob).second) return false;
                                               if (auto loc = repo.index().Find(blob))
                                                 packs.insert(loc->pack.Hex());
                                               return true;
                                             }));
  }
  std::vector<ObjectRef> out;
  out.push_back({ObjectType::kConfig, "config"});
  VMBACKUP_ASSIGN_OR_RETURN(auto keys, repo.backend().List(ObjectType::kKey));
  for (const auto& k : keys) out.push_back({ObjectType::kKey, k.name});
  for (const auto& p : packs) out.push_back({ObjectType::kPack, p});
  return out;
}

// Runs `fn` over `refs` on a few threads (each is one request to a remote store); the first
// error wins.
Status ForEachRef(const std::vector<ObjectRef>& refs,
                  const std::function<Status(const ObjectRef&)>& fn) {
  WorkerPool pool(7);
  std::mutex mu;
  Status first;
  pool.ParallelFor(refs.size(), [&](size_t i) {
    Status s = fn(refs[i]);
    std::lock_guard<std::mutex> l(mu);
    if (!s.ok() && first.ok()) first = s;
  });
  return first;
}

}  // namespace

Result<LockReport> KeepPointLocked(Repository& repo, const Point& point, int64_t until) {
  const ObjectLockPolicy& policy = repo.object_lock();
  if (policy.seconds <= 0) return FailedPreconditionError("the repository has no Object Lock");
  VMBACKUP_ASSIGN_OR_RETURN(auto refs, NeededObjects(repo, point));
  std::atomic<uint64_t> extended{0};
  const int64_t target = until + (policy.seconds_for_new() - policy.seconds);
  Status s = ForEachRef(refs, [&](const ObjectRef& ref) -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(int64_t locked, repo.backend().LockedUntil(ref));
    if (locked >= until) return Status::Ok();
    ++extended;
    return repo.backend()
        .ExtendLock(ref, target)
        .WithContext(std::string(storage::ObjectTypeName(ref.type)) + "/" + ref.name +
                     ": extend its lock");
  });
  if (!s.ok()) return s;
  return LockReport{refs.size(), extended.load()};
}

Result<int64_t> PointLockedUntil(Repository& repo, const std::string& id) {
  if (repo.object_lock().seconds <= 0) return int64_t(0);
  VMBACKUP_ASSIGN_OR_RETURN(int64_t until, repo.backend().LockedUntil({ObjectType::kPoint, id}));
  return until > int64_t(::time(nullptr)) ? until : 0;
}

Result<std::vector<std::string>> ShortLocks(Repository& repo, const Point& point,
                                            int64_t point_until) {
  VMBACKUP_ASSIGN_OR_RETURN(auto refs, NeededObjects(repo, point));
  std::mutex mu;
  std::vector<std::string> out;
  VMBACKUP_RETURN_IF_ERROR(ForEachRef(refs, [&](const ObjectRef& ref) -> Status {
    auto locked = repo.backend().LockedUntil(ref);
    if (!locked) {
      if (locked.error().code() == ErrorCode::kNotFound) return Status::Ok();  // check says so
      return locked.error();
    }
    if (*locked >= point_until) return Status::Ok();
    std::lock_guard<std::mutex> l(mu);
    out.push_back(StrFormat("%s/%s is locked until %s, but point %s until %s",
                            std::string(storage::ObjectTypeName(ref.type)).c_str(),
                            ref.name.c_str(), *locked ? UtcRfc3339(*locked).c_str() : "never",
                            point.id.c_str(), UtcRfc3339(point_until).c_str()));
    return Status::Ok();
  }));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vmbackup::repo
