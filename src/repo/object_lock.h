// Object Lock and restore points (docs/repository-format.md section 8a). A point needs its
// packs (chunks and tree pages), the config and the keys; packs it shares with older points were
// locked for those points, and may end their lock before it. So before a point is saved, every
// object it needs whose lock ends too early is extended; that is what lets deduplication and
// Object Lock work together.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "repo/point.h"
#include "repo/repository.h"

namespace vmbackup::repo {

struct LockReport {
  uint64_t objects = 0;   // objects the point needs that were looked at
  uint64_t extended = 0;  // of those, locks extended
};

// Keeps every object `point` needs locked until at least `until` (Unix seconds); those locked
// less long are extended to `until` plus the policy's quarter, as new objects are locked. The
// repository must have an Object Lock policy.
Result<LockReport> KeepPointLocked(Repository& repo, const Point& point, int64_t until);

// When the lock of point `id`'s record ends, if that is still to come; 0 when it is not locked
// (or the repository has no Object Lock). forget and prune leave such a point alone.
Result<int64_t> PointLockedUntil(Repository& repo, const std::string& id);

// For check: the objects `point` needs whose locks end before `point_until` ("pack X locked
// until D"). Empty when all are locked long enough.
Result<std::vector<std::string>> ShortLocks(Repository& repo, const Point& point,
                                            int64_t point_until);

}  // namespace vmbackup::repo
