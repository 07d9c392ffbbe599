// The catalog: restore points, their disks and change ids, and the job history, in SQLite (WAL
// mode, so several vmbackup processes can use it at once). Queries by VM and time answer from
// it without decrypting every point record.
//
// The repository stays the truth about points: Sync() adds the records of points the catalog
// does not know and drops the rows of points that were pruned or forgotten (they leave a
// tombstone), and the results of restore tests, so a lost or stale catalog heals itself; a point
// that vanished without one is kept as lost. Only the job history lives nowhere else. The catalog
// lives outside the repository, in a per-user cache folder (cli/repo_access.h), so that a
// repository can be read-only and an encrypted one holds nothing readable.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "repo/point.h"
#include "repo/restore_tests.h"

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
  // The latest restore test (test-restore) of the point; tested_time empty: never tested.
  std::string tested_time, tested_summary;
  bool tested_ok = false;
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
  int tests_added = 0;  // restore test results newly read from the repository
  int vanished = 0;     // points gone from the repository without a tombstone (lost, not pruned)
};

class Catalog {
 public:
  // Opens the catalog at `path`, creating it. kCorruption when the file is damaged, of another
  // schema, or belongs to another repository than `repository_id`.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path,
                                               const std::string& repository_id);
  // The same, but a catalog that cannot be used is set aside (`path`.damaged) and made anew;
  // `*note` then says so, for the user.
  static Result<std::unique_ptr<Catalog>> OpenOrRebuild(const std::string& path,
                                                        const std::string& repository_id,
                                                        std::string* note);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  Result<SyncStats> Sync(repo::Repository& repo);
  Status AddPoint(const repo::Point& point);
  Status RemovePoint(const std::string& id);
  // A restore test's result (its object name in the repository, repo/restore_tests.h).
  Status AddRestoreTest(const std::string& name, const repo::RestoreTest& t);

  // Newest first; lost points (see Vanished) are not listed.
  Result<std::vector<PointRow>> Points(const PointQuery& query);
  // Points the catalog knew that left the repository without a tombstone: lost records.
  Result<std::vector<std::string>> Vanished();
  // Every point id the catalog has seen: its points, lost ones included, and the points of jobs.
  Result<std::set<std::string>> KnownPoints();
  // The names of the VMs that have points.
  Result<std::vector<std::string>> Vms();
  Result<std::vector<DiskRow>> Disks(const std::string& point);
  // The newest point of `vm` (empty when it has none).
  Result<std::optional<PointRow>> LatestPoint(const std::string& vm);

  // Jobs record their process; one still "running" whose process is gone reads as "killed".
  Result<int64_t> StartJob(const std::string& kind, const std::string& vm);
  Status FinishJob(int64_t id, const Status& result, const std::string& point = "");
  // Newest first; `vm` empty: every VM.
  Result<std::vector<Job>> Jobs(const std::string& vm, int limit);

 private:
  explicit Catalog(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  Status SyncRestoreTests(repo::Repository& repo, SyncStats* stats);
  sqlite3* db_;
};

// A catalog that may still be opening on another thread: waits for it, or for its error.
using CatalogWait = std::function<Result<Catalog*>()>;

}  // namespace vmbackup::catalog
