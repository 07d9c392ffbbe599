#include "repo/prune.h"

#include <algorithm>
#include <ctime>
#include <map>

#include "base/strings.h"
#include "repo/marks.h"
#include "repo/object_lock.h"

namespace vmbackup::repo {
namespace {

// The UTC time at the start of a point id: YYYYMMDDTHHMMSS.
Result<struct tm> PointTime(const std::string& id) {
  struct tm tm = {};
  const char* end = id.size() >= 15 ? strptime(id.c_str(), "%Y%m%dT%H%M%S", &tm) : nullptr;
  if (end == nullptr || end != id.c_str() + 15)
    return CorruptionError("point id " + id + " does not start with its time");
  return tm;
}

std::string Bucket(const struct tm& tm, const char* format) {
  char buf[32];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

}  // namespace

Result<std::vector<PruneDecision>> PlanPrune(std::vector<PointSummary> points,
                                             const KeepPolicy& policy) {
  for (int n :
       {policy.last, policy.hourly, policy.daily, policy.weekly, policy.monthly, policy.yearly}) {
    if (n < 0)
      return InvalidArgumentError(StrFormat("a --keep-* count must not be negative (%d)", n));
  }
  if (policy.empty()) {
    return InvalidArgumentError(
        "no keep rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, "
        "--keep-monthly, --keep-yearly): refusing to remove every point");
  }
  // Newest first within each VM (ids sort by time).
  std::sort(points.begin(), points.end(), [](const PointSummary& a, const PointSummary& b) {
    return a.vm != b.vm ? a.vm < b.vm : a.id > b.id;
  });
  struct Rule {
    const char* name;
    int count;
    const char* format;  // strftime of the bucket; empty for "last"
  };
  const Rule rules[] = {
      {"last", policy.last, nullptr},       {"hourly", policy.hourly, "%Y-%m-%dT%H"},
      {"daily", policy.daily, "%Y-%m-%d"},  {"weekly", policy.weekly, "%G-W%V"},
      {"monthly", policy.monthly, "%Y-%m"}, {"yearly", policy.yearly, "%Y"}};
  std::vector<PruneDecision> out;
  for (size_t a = 0; a < points.size();) {
    size_t b = a;
    while (b < points.size() && points[b].vm == points[a].vm) ++b;
    std::map<std::string, int> used;              // rule -> buckets filled
    std::map<std::string, std::string> last_key;  // rule -> bucket of the last kept point
    for (size_t i = a; i < b; ++i) {
      VMBACKUP_ASSIGN_OR_RETURN(struct tm tm, PointTime(points[i].id));
      PruneDecision d{points[i].id, points[i].vm, false, {}};
      if (points[i].is_protected) d.reasons.push_back("protected");
      for (const Rule& r : rules) {
        if (r.count <= 0 || used[r.name] >= r.count) continue;
        std::string key = r.format ? Bucket(tm, r.format) : points[i].id;
        if (r.format && last_key[r.name] == key) continue;  // a newer point holds this bucket
        last_key[r.name] = key;
        ++used[r.name];
        d.reasons.push_back(r.format ? std::string(r.name) + " " + key : "last");
      }
      d.keep = !d.reasons.empty();
      out.push_back(std::move(d));
    }
    a = b;
  }
  return out;
}

Result<PruneReport> Prune(Repository& repo, const KeepPolicy& policy, const std::string& vm,
                          bool dry_run) {
  PruneReport report;
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, ListPoints(repo));
  std::vector<PointSummary> summaries;
  for (const auto& id : ids) {
    auto p = LoadPoint(repo, id);
    if (!p) {
      report.unreadable.push_back(id + ": " + p.error().message());
      continue;
    }
    if (!vm.empty() && p->vm_name != vm) continue;
    summaries.push_back({id, p->vm_name, p->is_protected});
  }
  VMBACKUP_ASSIGN_OR_RETURN(report.decisions, PlanPrune(std::move(summaries), policy));
  if (dry_run) return report;
  for (const PruneDecision& d : report.decisions) {
    if (d.keep) continue;
    VMBACKUP_ASSIGN_OR_RETURN(int64_t locked, PointLockedUntil(repo, d.id));
    if (locked) {
      report.locked.push_back({d.id, locked});
      continue;
    }
    Status s = ForgetPoint(repo, d.id, "prune");
    if (!s.ok()) return s.WithContext("remove restore point " + d.id);
    ++report.removed;
  }
  return report;
}

}  // namespace vmbackup::repo
