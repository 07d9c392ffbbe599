// The catalog: restore points, their disks and change ids, and the job history, in SQLite (WAL
// mode, so several vmbackup processes can use it at once). Queries by VM and time answer from
// it without decrypting every point record.
//
// The repository stays the truth about points: Sync() adds the records of points the catalog
// does not know and drops the rows of points that are gone, so a lost or stale catalog heals
// itself. Only the job history lives nowhere else.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "repo/point.h"

struct sqlite3;

namespace vmbackup::catalog {

struct PointQuery {
  std::string vm;     // empty: every VM
  std::string since;  // RFC 3339 or a point id prefix ("2026-11-22"); empty: no bound
  std::string until;  // exclusive
};

struct PointRow {
  std::string id, vm_name, vm_id, created, parent, consistency;
  bool is_protected = false;
  int disks = 0;
  uint64_t bytes_new = 0;
};

struct DiskRow {
  std::string point;
  int key = 0;
  std::string label, change_id, snapshot, transport;
  uint64_t capacity = 0;
};

struct Job {
  int64_t id = 0;
  std::string kind, vm, started, finished, status, message, point;
};

struct SyncStats {
  int added = 0, removed = 0;
};

class Catalog {
 public:
  // Opens the catalog at `path`, creating it. kInvalidArgument when it belongs to another
  // repository than `repository_id`.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path,
                                               const std::string& repository_id);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  Result<SyncStats> Sync(repo::Repository& repo);
  Status AddPoint(const repo::Point& point);
  Status RemovePoint(const std::string& id);

  // Newest first.
  Result<std::vector<PointRow>> Points(const PointQuery& query);
  Result<std::vector<DiskRow>> Disks(const std::string& point);
  // The newest point of `vm` (empty when it has none).
  Result<std::optional<PointRow>> LatestPoint(const std::string& vm);

  // A VM whose next backup must be a full (a failed CBT audit), and why; empty when none.
  Status MarkFullNeeded(const std::string& vm, const std::string& reason);
  Result<std::string> FullNeeded(const std::string& vm);
  Status ClearFullNeeded(const std::string& vm);

  Result<int64_t> StartJob(const std::string& kind, const std::string& vm);
  Status FinishJob(int64_t id, const Status& result, const std::string& point = "");
  // Newest first; `vm` empty: every VM.
  Result<std::vector<Job>> Jobs(const std::string& vm, int limit);

 private:
  explicit Catalog(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  sqlite3* db_;
};

}  // namespace vmbackup::catalog
