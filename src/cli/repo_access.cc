#include "cli/repo_access.h"

#include <cstdio>
#include <cstdlib>

#include "cli/output.h"
#include "io/posix_file.h"
#include "storage/local_backend.h"

namespace vmbackup::cli {

std::string RepoDir(const RepoOpts& o) {
  if (!o.repo.empty()) return o.repo;
  const char* env = std::getenv("VMBACKUP_REPO");
  return env ? env : "";
}

Result<repo::KeySource> Keys(const RepoOpts& o) {
  repo::KeySource k;
  k.key_file = o.key_file;
  if (!o.passphrase_file.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string p, io::ReadSmallFile(o.passphrase_file, 4096));
    while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
    k.passphrase = p;
  } else if (const char* env = std::getenv("VMBACKUP_PASSPHRASE")) {
    k.passphrase = env;
  }
  return k;
}

Result<std::unique_ptr<repo::Repository>> OpenRepo(const RepoOpts& o) {
  std::string dir = RepoDir(o);
  if (dir.empty())
    return InvalidArgumentError("no repository: give --repo DIR or set VMBACKUP_REPO");
  VMBACKUP_ASSIGN_OR_RETURN(auto backend, storage::LocalBackend::Open(dir));
  VMBACKUP_ASSIGN_OR_RETURN(repo::KeySource keys, Keys(o));
  return repo::Repository::Open(std::move(backend), keys);
}

Result<std::unique_ptr<catalog::Catalog>> OpenCatalog(const RepoOpts& o, repo::Repository& r) {
  VMBACKUP_ASSIGN_OR_RETURN(auto cat, catalog::Catalog::Open(RepoDir(o) + "/catalog.db", r.id()));
  VMBACKUP_RETURN_IF_ERROR(cat->Sync(r).status());
  return cat;
}

Status AsJob(const RepoOpts& o, repo::Repository& r, const std::string& kind,
             const std::function<Status()>& fn, const std::string* point) {
  VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(o, r));
  VMBACKUP_ASSIGN_OR_RETURN(int64_t job, cat->StartJob(kind, o.vm));
  Status s = fn();
  Status recorded = cat->FinishJob(job, s, point ? *point : "");
  if (s.ok()) VMBACKUP_RETURN_IF_ERROR(cat->Sync(r).status());
  return s.ok() ? recorded : s;
}

Result<LockedRepo> OpenLocked(const RepoOpts& o, bool exclusive, const std::string& purpose) {
  std::string dir = RepoDir(o);
  if (dir.empty())
    return InvalidArgumentError("no repository: give --repo DIR or set VMBACKUP_REPO");
  LockedRepo x;
  VMBACKUP_ASSIGN_OR_RETURN(x.lock_backend, storage::LocalBackend::Open(dir));
  VMBACKUP_ASSIGN_OR_RETURN(
      x.lock, repo::RepoLock::Acquire(*x.lock_backend, {exclusive, purpose, o.lock_wait}));
  for (const auto& b : x.lock->broken())
    std::fprintf(stderr, "vmbackup: removed a stale %s\n", repo::DescribeLock(b).c_str());
  VMBACKUP_ASSIGN_OR_RETURN(x.repo, OpenRepo(o));
  return x;
}

int ExitCodeOf(const Status& s) { return s.ok() ? kExitOk : ReportError(s); }

}  // namespace vmbackup::cli
