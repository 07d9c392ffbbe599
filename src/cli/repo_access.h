// Opening a repository from the command line: options, keys, the catalog, locks, and jobs
// recorded in the catalog's history. Shared by the repository and backup commands.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "catalog/catalog.h"
#include "repo/lock.h"
#include "repo/prune.h"
#include "repo/repository.h"
#include "storage/backend.h"

namespace vmbackup::cli {

struct RepoOpts {
  std::string repo, key_file, passphrase_file, password_command, chunk_size = "64K", point, vm;
  std::string s3_ca_file;
  std::string object_lock, object_lock_mode;  // init
  bool encrypt = false, dry_run = false, repair = false, no_lock = false;
  bool remove = false, damaged = false;
  std::vector<std::string> points;
  repo::KeepPolicy keep;
  std::string grace = "1h", since, until;
  int limit = 50;
  double repack_below = 0.5, lock_wait = 0;
};

// The options every repository command takes: --repo, the key options, --s3-ca-file, --no-lock.
void AddRepoOptions(CLI::App* cmd, RepoOpts& o);

// POINT (required) and --vm, for commands that work on one point.
void AddPointArgument(CLI::App* cmd, RepoOpts& o);

// --repo, or VMBACKUP_REPO: a folder or an S3 URL; empty when neither is given.
std::string RepoLocation(const RepoOpts& o);
// The backend of the repository the options name (location/location.h).
Result<std::unique_ptr<storage::Backend>> OpenBackend(const RepoOpts& o);
// The key given: --key-file, --passphrase-file, --password-command or VMBACKUP_PASSPHRASE (at
// most one of the options; an empty passphrase is refused). Empty when none is given.
Result<repo::KeySource> Keys(const RepoOpts& o);
// The same, but with none given and a terminal on stdin, asks for a passphrase (twice when
// `new_key`).
Result<repo::KeySource> KeysOrPrompt(const RepoOpts& o, bool new_key);
// Reads a secret from the terminal (/dev/tty) without echo.
Result<std::string> Prompt(const std::string& question);
// The repository opened with the key it took (asked for on a terminal when none was given and
// it is encrypted): helpers it starts (an export's nbdkit) need the same key.
struct OpenedRepo {
  std::unique_ptr<repo::Repository> repo;
  repo::KeySource key;
};
Result<OpenedRepo> OpenRepoWithKey(const RepoOpts& o);
Result<std::unique_ptr<repo::Repository>> OpenRepo(const RepoOpts& o);
// A remote store's traffic as the reports give it (JSON "transfer" and its text line):
// requests, objects saved, bytes sent and received, retries, seconds waiting.
nlohmann::json TransferJson(const storage::TransferStats& t);
std::string TransferText(const storage::TransferStats& t);
// The per-user cache folder: VMBACKUP_CACHE_DIR, else $XDG_CACHE_HOME/vmbackup, else
// ~/.cache/vmbackup.
std::string CacheDir();
// The repository's catalog (<cache folder>/<repository id>/catalog.db, mode 0600), brought up to
// date; a damaged one is rebuilt, and without a writable cache folder it lives in memory.
Result<std::unique_ptr<catalog::Catalog>> OpenCatalog(const RepoOpts& o, repo::Repository& r);
// Runs `fn` as a job of `kind` recorded in the catalog's history (for VM o.vm); `point`, when
// given, is read after `fn` and recorded as the job's restore point.
Status AsJob(const RepoOpts& o, repo::Repository& r, const std::string& kind,
             const std::function<Status()>& fn, const std::string* point = nullptr);
// The same with the catalog opened beside `fn`, on a thread of its own; `fn` gets a function
// that waits for it (a backup records its point there). An error opening it is the job's error
// when `fn` succeeded.
Status AsJob(const RepoOpts& o, repo::Repository& r, const std::string& kind,
             const std::function<Status(const catalog::CatalogWait&)>& fn,
             const std::string* point);

// A repository opened under a lock, taken before the index is loaded. Members go in reverse
// order: repository, lock, then the lock's backend.
struct LockedRepo {
  std::unique_ptr<storage::Backend> lock_backend;
  std::unique_ptr<repo::RepoLock> lock;
  std::unique_ptr<repo::Repository> repo;
  repo::KeySource key;  // the key that opened it
};
// Stale locks removed on the way are reported on stderr. With --no-lock a shared lock is not
// taken (an exclusive one cannot be skipped).
Result<LockedRepo> OpenLocked(const RepoOpts& o, bool exclusive, const std::string& purpose);

// The point a user named: a whole id, a unique prefix of one (like git and restic), or "latest"
// (of `vm` when given). kNotFound for none, kInvalidArgument for an ambiguous prefix (naming the
// candidates).
Result<std::string> ResolvePoint(repo::Repository& r, const std::string& text,
                                 const std::string& vm = "");

}  // namespace vmbackup::cli
