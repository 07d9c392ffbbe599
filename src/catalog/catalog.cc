#include "catalog/catalog.h"

#include <sqlite3.h>

#include <cstdio>
#include <set>

#include "base/process.h"
#include "base/strings.h"
#include "repo/marks.h"

namespace vmbackup::catalog {
namespace {

constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points(
  id TEXT PRIMARY KEY, vm_name TEXT NOT NULL, vm_id TEXT NOT NULL, created TEXT NOT NULL,
  parent TEXT NOT NULL, consistency TEXT NOT NULL, snapshot TEXT NOT NULL,
  protected INTEGER NOT NULL, notes TEXT NOT NULL, vanished INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS points_by_vm ON points(vm_name, id);
CREATE TABLE IF NOT EXISTS disks(
  point TEXT NOT NULL REFERENCES points(id) ON DELETE CASCADE, key INTEGER NOT NULL,
  label TEXT NOT NULL, capacity INTEGER NOT NULL, change_id TEXT NOT NULL,
  snapshot TEXT NOT NULL, transport TEXT NOT NULL, bytes_scanned INTEGER NOT NULL,
  bytes_new INTEGER NOT NULL, PRIMARY KEY(point, key));
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, vm_name TEXT NOT NULL,
  started TEXT NOT NULL, finished TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'running',
  message TEXT NOT NULL DEFAULT '', point TEXT NOT NULL DEFAULT '',
  owner TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS jobs_by_vm ON jobs(vm_name, id);
CREATE TABLE IF NOT EXISTS tests(
  name TEXT PRIMARY KEY, point TEXT NOT NULL REFERENCES points(id) ON DELETE CASCADE,
  time TEXT NOT NULL, ok INTEGER NOT NULL, summary TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tests_by_point ON tests(point, time);
)sql";

Status SqlError(sqlite3* db, const std::string& what) {
  return IOError("catalog: " + what + ": " + sqlite3_errmsg(db));
}

// A prepared statement; binds by position (1-based), finalized at scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  // Runs a statement that returns no rows.
  Status Run(const std::string& what) {
    if (!ok() || Step() != SQLITE_DONE) return SqlError(db_, what);
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

PointRow RowOf(Stmt& s) {
  PointRow r;
  r.id = s.Text(0);
  r.vm_name = s.Text(1);
  r.vm_id = s.Text(2);
  r.created = s.Text(3);
  r.parent = s.Text(4);
  r.consistency = s.Text(5);
  r.is_protected = s.Int(6) != 0;
  r.disks = int(s.Int(7));
  r.bytes_new = uint64_t(s.Int(8));
  r.tested_time = s.Text(9);
  r.tested_ok = s.Int(10) != 0;
  r.tested_summary = s.Text(11);
  return r;
}

constexpr const char* kPointColumns =
    "SELECT p.id, p.vm_name, p.vm_id, p.created, p.parent, p.consistency, p.protected, "
    "(SELECT count(*) FROM disks d WHERE d.point = p.id), "
    "(SELECT coalesce(sum(bytes_new), 0) FROM disks d WHERE d.point = p.id), "
    "t.time, t.ok, t.summary FROM points p LEFT JOIN tests t ON t.name = "
    "(SELECT name FROM tests l WHERE l.point = p.id ORDER BY l.time DESC LIMIT 1) ";

// Point ids start with their UTC time (YYYYMMDDTHHMMSS), so a time bound given as RFC 3339
// ("2026-11-22", "2026-11-22T08:30:00Z") becomes an id prefix: its digits, with the 'T'.
std::string IdPrefix(const std::string& time) {
  std::string digits;
  for (char c : time) {
    if (c >= '0' && c <= '9') digits += c;
  }
  if (digits.size() <= 8) return digits;
  return digits.substr(0, 8) + "T" + digits.substr(8, 6);
}

}  // namespace

Result<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path,
                                               const std::string& repository_id) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    Status s = IOError("catalog " + path + ": " + (db ? sqlite3_errmsg(db) : "cannot open"));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Catalog> c(new Catalog(db));
  sqlite3_busy_timeout(db, 30000);  // other vmbackup processes write it too
  // A file SQLite cannot read as a database (or a damaged one) is corruption: the caller
  // rebuilds the catalog.
  auto setup = [&](const char* sql) -> Status {
    Status st = c->Exec(sql);
    const int code = sqlite3_errcode(db) & 0xff;
    if (!st.ok() && (code == SQLITE_NOTADB || code == SQLITE_CORRUPT))
      return CorruptionError(st.message());
    return st;
  };
  VMBACKUP_RETURN_IF_ERROR(setup("PRAGMA journal_mode=WAL"));
  // A cache needs consistency, not durability: in WAL mode, NORMAL syncs at checkpoints only
  // (the one on close included), not at each commit: a power cut may lose the last
  // transactions, never the database, and Sync brings the points back. A backup's catalog
  // work had 7 syncs in it, more than taking the repository lock.
  VMBACKUP_RETURN_IF_ERROR(setup("PRAGMA synchronous=NORMAL"));
  VMBACKUP_RETURN_IF_ERROR(setup("PRAGMA foreign_keys=ON"));
  VMBACKUP_RETURN_IF_ERROR(setup("PRAGMA quick_check"));
  VMBACKUP_RETURN_IF_ERROR(setup(kSchema));
  Stmt get(db, "SELECT key, value FROM meta");
  std::string repo, version;
  while (get.ok() && get.Step() == SQLITE_ROW) {
    if (get.Text(0) == "repository") repo = get.Text(1);
    if (get.Text(0) == "schema") version = get.Text(1);
  }
  if (!version.empty() && version != std::to_string(kSchemaVersion)) {
    return CorruptionError("catalog " + path + " has schema version " + version);
  }
  if (!repo.empty() && repo != repository_id) {
    return CorruptionError("catalog " + path + " belongs to repository " + repo + ", not " +
                           repository_id);
  }
  if (repo.empty()) {
    Stmt put(db, "INSERT OR REPLACE INTO meta(key, value) VALUES ('repository', ?), ('schema', ?)");
    VMBACKUP_RETURN_IF_ERROR(put.Bind(1, repository_id)
                                 .Bind(2, std::to_string(kSchemaVersion))
                                 .Run("record the repository"));
  }
  return c;
}

Result<std::unique_ptr<Catalog>> Catalog::OpenOrRebuild(const std::string& path,
                                                        const std::string& repository_id,
                                                        std::string* note) {
  auto c = Open(path, repository_id);
  if (c || c.error().code() != ErrorCode::kCorruption) return c;
  // The catalog is a cache: a damaged one is set aside (for a look) and made anew, and the next
  // Sync fills it from the repository. Only the job history is lost.
  const std::string aside = path + ".damaged";
  if (std::rename(path.c_str(), aside.c_str()) != 0)
    return c.error().WithContext("set the damaged catalog aside");
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  if (note) {
    *note = "the catalog " + path + " could not be read (" + c.error().message() +
            "): rebuilt it from the repository; the old file is " + aside;
  }
  return Open(path, repository_id);
}

Catalog::~Catalog() { sqlite3_close(db_); }

Status Catalog::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    return IOError(std::string("catalog: ") + msg);
  }
  return Status::Ok();
}

Status Catalog::AddPoint(const repo::Point& p) {
  VMBACKUP_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto body = [&]() -> Status {
    Stmt del(db_, "DELETE FROM points WHERE id = ?");
    VMBACKUP_RETURN_IF_ERROR(del.Bind(1, p.id).Run("replace a point"));
    Stmt ins(db_,
             "INSERT INTO points(id, vm_name, vm_id, created, parent, consistency, snapshot, "
             "protected, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    VMBACKUP_RETURN_IF_ERROR(ins.Bind(1, p.id)
                                 .Bind(2, p.vm_name)
                                 .Bind(3, p.vm_id)
                                 .Bind(4, p.created)
                                 .Bind(5, p.parent)
                                 .Bind(6, p.consistency)
                                 .Bind(7, p.snapshot)
                                 .Bind(8, int64_t(p.is_protected))
                                 .Bind(9, p.notes)
                                 .Run("add point " + p.id));
    for (const repo::PointDisk& d : p.disks) {
      Stmt disk(db_,
                "INSERT INTO disks(point, key, label, capacity, change_id, snapshot, transport, "
                "bytes_scanned, bytes_new) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      VMBACKUP_RETURN_IF_ERROR(disk.Bind(1, p.id)
                                   .Bind(2, int64_t(d.key))
                                   .Bind(3, d.label)
                                   .Bind(4, int64_t(d.capacity))
                                   .Bind(5, d.change_id)
                                   .Bind(6, d.snapshot)
                                   .Bind(7, d.transport)
                                   .Bind(8, int64_t(d.bytes_scanned))
                                   .Bind(9, int64_t(d.bytes_new))
                                   .Run("add a disk of point " + p.id));
    }
    return Status::Ok();
  };
  Status s = body();
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();  // the first error is the one to report
    return s;
  }
  return Exec("COMMIT");
}

Status Catalog::RemovePoint(const std::string& id) {
  Stmt del(db_, "DELETE FROM points WHERE id = ?");
  return del.Bind(1, id).Run("remove point " + id);
}

Status Catalog::AddRestoreTest(const std::string& name, const repo::RestoreTest& t) {
  // Only for a point the catalog lists (a damaged point record is not listed).
  Stmt ins(db_,
           "INSERT OR REPLACE INTO tests(name, point, time, ok, summary) SELECT ?1, ?2, ?3, ?4, ?5 "
           "WHERE EXISTS (SELECT 1 FROM points WHERE id = ?2)");
  return ins.Bind(1, name)
      .Bind(2, t.point)
      .Bind(3, t.time)
      .Bind(4, int64_t(t.ok))
      .Bind(5, t.summary)
      .Run("add the restore test " + name);
}

Result<SyncStats> Catalog::Sync(repo::Repository& repo) {
  SyncStats stats;
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kPoint));
  std::set<std::string> ids, marked;
  const std::string marker = ".protected";
  for (const auto& o : objects) {
    if (o.name.size() > marker.size() && o.name.ends_with(marker)) {
      marked.insert(o.name.substr(0, o.name.size() - marker.size()));
    } else {
      ids.insert(o.name);
    }
  }
  std::set<std::string> known;
  std::set<std::string> known_protected;
  {
    Stmt all(db_, "SELECT id, protected FROM points");  // vanished ones included
    if (!all.ok()) return SqlError(db_, "list points");
    while (all.Step() == SQLITE_ROW) {
      known.insert(all.Text(0));
      if (all.Int(1)) known_protected.insert(all.Text(0));
    }
  }
  // A point that went away with a tombstone was pruned or forgotten: its row goes. One that
  // went away without was lost: its row stays, marked, so that check and gc can say so.
  std::set<std::string> forgotten;
  if (!known.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(forgotten, repo::ForgottenPoints(repo));
  }
  for (const auto& id : known) {
    if (ids.count(id)) continue;
    if (forgotten.count(id)) {
      VMBACKUP_RETURN_IF_ERROR(RemovePoint(id));
      ++stats.removed;
    } else {
      Stmt up(db_, "UPDATE points SET vanished = 1 WHERE id = ? AND vanished = 0");
      VMBACKUP_RETURN_IF_ERROR(up.Bind(1, id).Run("mark point " + id + " as lost"));
      ++stats.vanished;
    }
  }
  for (const auto& id : ids) {
    if (known.count(id)) {
      if (marked.count(id) != known_protected.count(id)) {
        Stmt up(db_, "UPDATE points SET protected = ? WHERE id = ?");
        VMBACKUP_RETURN_IF_ERROR(
            up.Bind(1, int64_t(marked.count(id))).Bind(2, id).Run("update point " + id));
      }
      continue;
    }
    auto p = repo::LoadPoint(repo, id);
    if (!p) continue;  // a damaged record: check and verify report it; list shows what it can
    VMBACKUP_RETURN_IF_ERROR(AddPoint(*p));
    ++stats.added;
  }
  VMBACKUP_RETURN_IF_ERROR(SyncRestoreTests(repo, &stats));
  return stats;
}

// Reads the results the catalog lacks (results are write-once: a known name is up to date) and
// drops the rows of results that left the repository.
Status Catalog::SyncRestoreTests(repo::Repository& repo, SyncStats* stats) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kTest));
  std::set<std::string> present, known;
  for (const auto& o : objects) present.insert(o.name);
  {
    Stmt all(db_, "SELECT name FROM tests");
    if (!all.ok()) return SqlError(db_, "list restore tests");
    while (all.Step() == SQLITE_ROW) known.insert(all.Text(0));
  }
  for (const auto& name : known) {
    if (present.count(name)) continue;
    Stmt del(db_, "DELETE FROM tests WHERE name = ?");
    VMBACKUP_RETURN_IF_ERROR(del.Bind(1, name).Run("remove the restore test " + name));
  }
  for (const auto& name : present) {
    if (known.count(name)) continue;
    auto t = repo::LoadRestoreTest(repo, name);
    if (!t) continue;  // unreadable: a note lost, nothing a restore needs
    VMBACKUP_RETURN_IF_ERROR(AddRestoreTest(name, *t));
    ++stats->tests_added;
  }
  return Status::Ok();
}

Result<std::vector<PointRow>> Catalog::Points(const PointQuery& q) {
  std::string sql =
      std::string(kPointColumns) +
      "WHERE p.vanished = 0 AND (?1 = '' OR p.vm_name = ?1) AND (?2 = '' OR p.id >= ?2) "
      "AND (?3 = '' OR p.id < ?3) ORDER BY p.id DESC";
  Stmt s(db_, sql.c_str());
  if (!s.ok()) return SqlError(db_, "query points");
  s.Bind(1, q.vm).Bind(2, IdPrefix(q.since)).Bind(3, IdPrefix(q.until));
  std::vector<PointRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(RowOf(s));
  if (rc != SQLITE_DONE) return SqlError(db_, "query points");
  return out;
}

Result<std::optional<PointRow>> Catalog::LatestPoint(const std::string& vm) {
  std::string sql = std::string(kPointColumns) +
                    "WHERE p.vanished = 0 AND p.vm_name = ? ORDER BY p.id DESC LIMIT 1";
  Stmt s(db_, sql.c_str());
  if (!s.ok()) return SqlError(db_, "query the latest point");
  s.Bind(1, vm);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return std::optional<PointRow>(RowOf(s));
  if (rc != SQLITE_DONE) return SqlError(db_, "query the latest point");
  return std::optional<PointRow>();
}

Result<std::vector<DiskRow>> Catalog::Disks(const std::string& point) {
  Stmt s(db_,
         "SELECT key, label, capacity, change_id, snapshot, transport FROM disks WHERE point = ? "
         "ORDER BY key");
  if (!s.ok()) return SqlError(db_, "query disks");
  s.Bind(1, point);
  std::vector<DiskRow> out;
  while (s.Step() == SQLITE_ROW) {
    DiskRow d;
    d.point = point;
    d.key = int(s.Int(0));
    d.label = s.Text(1);
    d.capacity = uint64_t(s.Int(2));
    d.change_id = s.Text(3);
    d.snapshot = s.Text(4);
    d.transport = s.Text(5);
    out.push_back(d);
  }
  return out;
}

Result<std::vector<std::string>> Catalog::Vanished() {
  Stmt s(db_, "SELECT id FROM points WHERE vanished = 1 ORDER BY id");
  if (!s.ok()) return SqlError(db_, "query lost points");
  std::vector<std::string> out;
  while (s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
  return out;
}

Result<std::set<std::string>> Catalog::KnownPoints() {
  Stmt s(db_, "SELECT id FROM points UNION SELECT point FROM jobs WHERE point != ''");
  if (!s.ok()) return SqlError(db_, "query known points");
  std::set<std::string> out;
  while (s.Step() == SQLITE_ROW) out.insert(s.Text(0));
  return out;
}

Result<std::vector<std::string>> Catalog::Vms() {
  Stmt s(db_, "SELECT DISTINCT vm_name FROM points WHERE vanished = 0 ORDER BY vm_name");
  if (!s.ok()) return SqlError(db_, "query VMs");
  std::vector<std::string> out;
  while (s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
  return out;
}

Result<int64_t> Catalog::StartJob(const std::string& kind, const std::string& vm) {
  Stmt s(db_, "INSERT INTO jobs(kind, vm_name, started, owner) VALUES (?, ?, ?, ?)");
  VMBACKUP_RETURN_IF_ERROR(
      s.Bind(1, kind).Bind(2, vm).Bind(3, UtcNowRfc3339()).Bind(4, OwnerTag()).Run("start a job"));
  return int64_t(sqlite3_last_insert_rowid(db_));
}

Status Catalog::FinishJob(int64_t id, const Status& result, const std::string& point) {
  Stmt s(db_, "UPDATE jobs SET finished = ?, status = ?, message = ?, point = ? WHERE id = ?");
  return s.Bind(1, UtcNowRfc3339())
      .Bind(2, result.ok() ? std::string("ok") : std::string(ErrorCodeName(result.code())))
      .Bind(3, result.message())
      .Bind(4, point)
      .Bind(5, id)
      .Run("finish a job");
}

Result<std::vector<Job>> Catalog::Jobs(const std::string& vm, int limit) {
  {
    // A job still "running" whose process is gone was killed: say so, once and for all.
    Stmt running(db_, "SELECT id, owner FROM jobs WHERE status = 'running'");
    if (!running.ok()) return SqlError(db_, "query running jobs");
    std::vector<int64_t> dead;
    while (running.Step() == SQLITE_ROW)
      if (!OwnerAlive(running.Text(1))) dead.push_back(running.Int(0));
    for (int64_t id : dead) {
      Stmt up(db_,
              "UPDATE jobs SET status = 'killed', message = 'the process ended without finishing "
              "the job (killed, or the machine stopped)' WHERE id = ? AND status = 'running'");
      VMBACKUP_RETURN_IF_ERROR(up.Bind(1, id).Run("mark a killed job"));
    }
  }
  Stmt s(db_,
         "SELECT id, kind, vm_name, started, finished, status, message, point FROM jobs "
         "WHERE (?1 = '' OR vm_name = ?1) ORDER BY id DESC LIMIT ?2");
  if (!s.ok()) return SqlError(db_, "query jobs");
  s.Bind(1, vm).Bind(2, int64_t(limit));
  std::vector<Job> out;
  while (s.Step() == SQLITE_ROW) {
    out.push_back(
        {s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)});
  }
  return out;
}

}  // namespace vmbackup::catalog
