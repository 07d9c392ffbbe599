// Retention: which restore points to keep (last N, and the newest point of each of the last N
// hours, days, ISO weeks, months and years, per VM, in UTC) and removing the others' records.
// Every point is a logical full, so removing one never breaks another; the data only they used
// is reclaimed by gc. Protected points are always kept.
#pragma once

#include <string>
#include <vector>

#include "repo/point.h"

namespace vmbackup::repo {

struct KeepPolicy {
  int last = 0, hourly = 0, daily = 0, weekly = 0, monthly = 0, yearly = 0;
  bool empty() const {
    return last == 0 && hourly == 0 && daily == 0 && weekly == 0 && monthly == 0 && yearly == 0;
  }
};

struct PointSummary {
  std::string id, vm;
  bool is_protected = false;
};

struct PruneDecision {
  std::string id, vm;
  bool keep = false;
  std::vector<std::string> reasons;  // "last", "daily 2026-11-22", "protected", ...
};

// Decides for every point (pure: no I/O). Points are grouped by VM; within a VM the newest
// points fill the buckets first. Ids carry the creation time (docs/repository-format.md §7).
// kInvalidArgument for an empty policy (it would remove everything) or an id without a time.
Result<std::vector<PruneDecision>> PlanPrune(std::vector<PointSummary> points,
                                             const KeepPolicy& policy);

struct PruneReport {
  std::vector<PruneDecision> decisions;  // newest first per VM
  std::vector<std::string> unreadable;   // point records that could not be read: kept
  // Points the policy would remove but Object Lock keeps: id and the lock's end (Unix seconds).
  std::vector<std::pair<std::string, int64_t>> locked;
  uint64_t removed = 0;
};

// Plans over every point (of `vm` only, when not empty) and, unless `dry_run`, removes the
// records of the points not kept. The caller holds an exclusive lock.
Result<PruneReport> Prune(Repository& repo, const KeepPolicy& policy, const std::string& vm,
                          bool dry_run);

}  // namespace vmbackup::repo
