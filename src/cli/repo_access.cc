#include "cli/repo_access.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <optional>

#include "base/strings.h"
#include "cli/output.h"
#include "io/posix_file.h"
#include "location/location.h"
#include "repo/point.h"

namespace vmbackup::cli {

void AddRepoOptions(CLI::App* c, RepoOpts& o) {
  c->add_option("--repo", o.repo,
                "repository: a folder, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] (or "
                "VMBACKUP_REPO)");
  c->add_option("--key-file", o.key_file, "key file of an encrypted repository");
  c->add_option("--passphrase-file", o.passphrase_file,
                "file holding the passphrase (or VMBACKUP_PASSPHRASE)");
  c->add_option("--password-command", o.password_command,
                "command that prints the passphrase (run by /bin/sh)");
  c->add_option("--s3-ca-file", o.s3_ca_file,
                "PEM bundle of the CA that signed an S3 server's certificate (else the system's)");
  c->add_flag("--no-lock", o.no_lock,
              "take no lock (a read-only repository); for commands that only read");
}

void AddPointArgument(CLI::App* cmd, RepoOpts& o) {
  cmd->add_option("POINT", o.point, "the restore point (id, unique prefix, or latest)")->required();
  cmd->add_option("--vm", o.vm, "with POINT latest: that VM's newest point");
}

nlohmann::json TransferJson(const storage::TransferStats& t) {
  return {{"requests", t.requests},     {"objects_saved", t.objects_saved},
          {"bytes_sent", t.bytes_sent}, {"bytes_received", t.bytes_received},
          {"retries", t.retries},       {"wait_seconds", double(t.wait_ns) / 1e9}};
}

std::string TransferText(const storage::TransferStats& t) {
  return StrFormat(
      "%s sent in %llu objects, %s received; %llu requests, %llu retried; %.2f s waiting for "
      "the store (summed over threads)",
      HumanBytes(t.bytes_sent).c_str(), (unsigned long long)t.objects_saved,
      HumanBytes(t.bytes_received).c_str(), (unsigned long long)t.requests,
      (unsigned long long)t.retries, double(t.wait_ns) / 1e9);
}

std::string RepoLocation(const RepoOpts& o) {
  if (!o.repo.empty()) return o.repo;
  const char* env = std::getenv("VMBACKUP_REPO");
  return env ? env : "";
}

Result<std::unique_ptr<storage::Backend>> OpenBackend(const RepoOpts& o) {
  const std::string where = RepoLocation(o);
  if (where.empty())
    return InvalidArgumentError("no repository: give --repo DIR or set VMBACKUP_REPO");
  return location::Open(where, {o.s3_ca_file});
}

namespace {

std::string StripNewline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Runs `command` through /bin/sh with stdout captured (restic's --password-command); its
// stderr and stdin stay the user's, so it may prompt.
Result<std::string> RunPasswordCommand(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return PosixError("run --password-command", errno);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0 && out.size() < 4096) out.append(buf, n);
  int status = ::pclose(p);
  if (status != 0)
    return FailedPreconditionError(StrFormat("--password-command exited with status %d", status));
  return StripNewline(out);
}

}  // namespace

Result<std::string> Prompt(const std::string& question) {
  int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0) return PosixError("open the terminal", errno);
  struct termios old;
  bool restore = ::tcgetattr(fd, &old) == 0;
  if (restore) {
    struct termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  (void)!::write(fd, question.data(), question.size());
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line += c;
  if (restore) ::tcsetattr(fd, TCSAFLUSH, &old);
  (void)!::write(fd, "\n", 1);
  ::close(fd);
  return StripNewline(line);
}

Result<repo::KeySource> Keys(const RepoOpts& o) {
  const int given =
      int(!o.key_file.empty()) + int(!o.passphrase_file.empty()) + int(!o.password_command.empty());
  if (given > 1) {
    return InvalidArgumentError(
        "give only one of --key-file, --passphrase-file and --password-command");
  }
  repo::KeySource k;
  if (!o.key_file.empty()) {
    k.key_file = o.key_file;
    return k;
  }
  if (!o.passphrase_file.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string p, io::ReadSmallFile(o.passphrase_file, 4096));
    k.passphrase = StripNewline(p);
    if (k.passphrase->empty())
      return InvalidArgumentError("the passphrase file " + o.passphrase_file + " is empty");
  } else if (!o.password_command.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(k.passphrase, RunPasswordCommand(o.password_command));
    if (k.passphrase->empty())
      return InvalidArgumentError("--password-command printed an empty passphrase");
  } else if (const char* env = std::getenv("VMBACKUP_PASSPHRASE")) {
    k.passphrase = env;
    if (k.passphrase->empty()) return InvalidArgumentError("VMBACKUP_PASSPHRASE is empty");
  }
  return k;
}

Result<repo::KeySource> KeysOrPrompt(const RepoOpts& o, bool new_key) {
  VMBACKUP_ASSIGN_OR_RETURN(repo::KeySource k, Keys(o));
  if (!k.empty() || !::isatty(0)) return k;
  VMBACKUP_ASSIGN_OR_RETURN(std::string p, Prompt("passphrase: "));
  if (p.empty()) return InvalidArgumentError("the passphrase is empty");
  if (new_key) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string again, Prompt("the same passphrase again: "));
    if (again != p) return InvalidArgumentError("the passphrases differ");
  }
  k.passphrase = p;
  return k;
}

Result<OpenedRepo> OpenRepoWithKey(const RepoOpts& o) {
  OpenedRepo out;
  VMBACKUP_ASSIGN_OR_RETURN(out.key, Keys(o));
  VMBACKUP_ASSIGN_OR_RETURN(auto backend, OpenBackend(o));
  auto r = repo::Repository::Open(std::move(backend), out.key);
  // An encrypted repository opened with no key from a terminal: ask for the passphrase.
  if (!r && r.error().code() == ErrorCode::kUnauthenticated && out.key.empty() && ::isatty(0)) {
    VMBACKUP_ASSIGN_OR_RETURN(out.key, KeysOrPrompt(o, false));
    VMBACKUP_ASSIGN_OR_RETURN(backend, OpenBackend(o));
    r = repo::Repository::Open(std::move(backend), out.key);
  }
  if (!r) return r.error();
  out.repo = std::move(*r);
  return out;
}

Result<std::unique_ptr<repo::Repository>> OpenRepo(const RepoOpts& o) {
  VMBACKUP_ASSIGN_OR_RETURN(OpenedRepo r, OpenRepoWithKey(o));
  return std::move(r.repo);
}

std::string CacheDir() {
  if (const char* d = std::getenv("VMBACKUP_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/vmbackup";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/vmbackup";
  return "";
}

namespace {

// Makes `path` and its parents as private folders; false when it cannot.
bool MakePrivateDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return false;
  ::chmod(path.c_str(), 0700);
  return ::access(path.c_str(), W_OK) == 0;
}

}  // namespace

Result<std::unique_ptr<catalog::Catalog>> OpenCatalog(const RepoOpts& o, repo::Repository& r) {
  // Versions before the cache folder kept the catalog inside the repository, where it showed
  // VM names in the clear: it goes (when the repository can be written).
  const std::string dir = RepoLocation(o);
  const std::string old = dir + "/catalog.db";
  if (!location::IsRemote(dir) && io::PathExists(old) && ::access(dir.c_str(), W_OK) == 0) {
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((old + suffix).c_str());
    Note(
        "removed the old catalog.db from the repository (the catalog now lives in the cache "
        "folder)");
  }
  const std::string cache = CacheDir();
  std::string path = ":memory:";
  if (!cache.empty() && MakePrivateDirs(cache + "/" + r.id())) {
    path = cache + "/" + r.id() + "/catalog.db";
  } else {
    Note(
        "no writable cache folder (%s): the catalog is kept in memory for this command only "
        "(set VMBACKUP_CACHE_DIR)",
        cache.empty() ? "HOME is not set" : cache.c_str());
  }
  std::string note;
  VMBACKUP_ASSIGN_OR_RETURN(auto cat, catalog::Catalog::OpenOrRebuild(path, r.id(), &note));
  if (!note.empty()) Note("%s", note.c_str());
  VMBACKUP_ASSIGN_OR_RETURN(catalog::SyncStats stats, cat->Sync(r));
  if (stats.vanished) {
    // A loss is said even with -q.
    std::fprintf(stderr,
                 "vmbackup: %d restore points are gone from the repository without being pruned "
                 "or forgotten (see 'vmbackup check')\n",
                 stats.vanished);
  }
  return cat;
}

namespace {

// Records how the job ended; after a success the catalog catches up with what the job wrote.
Status EndJob(catalog::Catalog& cat, int64_t job, const Status& s, const std::string* point,
              repo::Repository& r) {
  Status recorded = cat.FinishJob(job, s, point ? *point : "");
  if (s.ok()) VMBACKUP_RETURN_IF_ERROR(cat.Sync(r).status());
  return s.ok() ? recorded : s;
}

}  // namespace

Status AsJob(const RepoOpts& o, repo::Repository& r, const std::string& kind,
             const std::function<Status()>& fn, const std::string* point) {
  // The catalog first: prune, forget and gc change the points its Sync reads.
  VMBACKUP_ASSIGN_OR_RETURN(auto cat, OpenCatalog(o, r));
  VMBACKUP_ASSIGN_OR_RETURN(int64_t job, cat->StartJob(kind, o.vm));
  return EndJob(*cat, job, fn(), point, r);
}

Status AsJob(const RepoOpts& o, repo::Repository& r, const std::string& kind,
             const std::function<Status(const catalog::CatalogWait&)>& fn,
             const std::string* point) {
  struct Opened {
    std::unique_ptr<catalog::Catalog> cat;
    int64_t job = 0;
  };
  // The catalog opens and catches up with the repository beside the job, which needs it only
  // at its end (~6 ms off the start of an incremental). Its Sync reads through the backend and
  // the codec alone, which the job's own threads share already, and a backup adds no point
  // before it has waited for the catalog.
  std::future<Result<Opened>> opening = std::async(std::launch::async, [&]() -> Result<Opened> {
    Opened x;
    VMBACKUP_ASSIGN_OR_RETURN(x.cat, OpenCatalog(o, r));
    VMBACKUP_ASSIGN_OR_RETURN(x.job, x.cat->StartJob(kind, o.vm));
    return x;
  });
  std::optional<Result<Opened>> opened;
  const catalog::CatalogWait wait = [&]() -> Result<catalog::Catalog*> {
    if (!opened) opened.emplace(opening.get());
    if (!*opened) return opened->error();
    return (*opened)->cat.get();
  };
  Status s = fn(wait);
  Result<catalog::Catalog*> cat = wait();
  if (!cat) return s.ok() ? cat.error() : s;
  return EndJob(**cat, (*opened)->job, s, point, r);
}

Result<LockedRepo> OpenLocked(const RepoOpts& o, bool exclusive, const std::string& purpose) {
  LockedRepo x;
  if (o.no_lock) {
    if (exclusive)
      return InvalidArgumentError(purpose + " needs the exclusive lock: drop --no-lock");
    VMBACKUP_ASSIGN_OR_RETURN(OpenedRepo r, OpenRepoWithKey(o));
    x.repo = std::move(r.repo);
    x.key = std::move(r.key);
    return x;
  }
  VMBACKUP_ASSIGN_OR_RETURN(x.lock_backend, OpenBackend(o));
  VMBACKUP_ASSIGN_OR_RETURN(
      x.lock, repo::RepoLock::Acquire(*x.lock_backend, {exclusive, purpose, o.lock_wait}));
  for (const auto& b : x.lock->broken()) Note("removed a stale %s", repo::DescribeLock(b).c_str());
  VMBACKUP_ASSIGN_OR_RETURN(OpenedRepo r, OpenRepoWithKey(o));
  x.repo = std::move(r.repo);
  x.key = std::move(r.key);
  return x;
}

Result<std::string> ResolvePoint(repo::Repository& r, const std::string& text,
                                 const std::string& vm) {
  if (text.empty()) return InvalidArgumentError("no restore point given");
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, repo::ListPoints(r));
  if (text == "latest") {
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
      if (vm.empty()) return *it;
      auto p = repo::LoadPoint(r, *it);
      if (p && p->vm_name == vm) return *it;
    }
    return NotFoundError(vm.empty() ? "the repository has no restore point"
                                    : "VM " + vm + " has no restore point");
  }
  std::vector<std::string> found;
  for (const auto& id : ids) {
    if (id == text) return id;
    if (id.compare(0, text.size(), text) == 0) found.push_back(id);
  }
  if (found.empty()) return NotFoundError("no restore point " + text);
  if (found.size() > 1) {
    std::string list;
    for (size_t i = 0; i < found.size() && i < 10; ++i) list += "\n  " + found[i];
    if (found.size() > 10) list += StrFormat("\n  ... and %zu more", found.size() - 10);
    return InvalidArgumentError("restore point '" + text + "' is ambiguous; it may be:" + list);
  }
  return found[0];
}

}  // namespace vmbackup::cli
