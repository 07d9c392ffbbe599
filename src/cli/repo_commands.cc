#include "cli/repo_commands.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "io/posix_file.h"
#include "repo/maintenance.h"
#include "repo/point.h"
#include "storage/local_backend.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

struct RepoOpts {
  std::string repo, key_file, passphrase_file, chunk_size = "64K", point, vm;
  bool json = false, encrypt = false;
};

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

template <class Fn>
void Bind(CLI::App* cmd, int* exit_code, Fn fn) {
  cmd->callback([exit_code, fn] {
    Status s = fn();
    *exit_code = s.ok() ? kExitOk : ReportError(s);
  });
}

}  // namespace

void AddRepoCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<RepoOpts>();
  auto common = [o](CLI::App* c) {
    c->add_option("--repo", o->repo, "repository folder (or VMBACKUP_REPO)");
    c->add_option("--key-file", o->key_file, "key file of an encrypted repository");
    c->add_option("--passphrase-file", o->passphrase_file,
                  "file holding the passphrase (or VMBACKUP_PASSPHRASE)");
    c->add_flag("--json", o->json, "machine-readable output");
  };

  CLI::App* c = app.add_subcommand("init", "create a repository");
  common(c);
  c->add_option("--chunk-size", o->chunk_size, "chunk size (power of two, 4K-4M; default 64K)");
  c->add_flag("--encrypt", o->encrypt,
              "AES-256-GCM; needs --key-file (created if missing) or a passphrase");
  Bind(c, exit_code, [o]() -> Status {
    std::string dir = RepoDir(*o);
    if (dir.empty())
      return InvalidArgumentError("no repository: give --repo DIR or set VMBACKUP_REPO");
    repo::InitOptions io;
    VMBACKUP_ASSIGN_OR_RETURN(io.chunk_size, ParseSize(o->chunk_size));
    io.encrypt = o->encrypt;
    VMBACKUP_ASSIGN_OR_RETURN(io.key, Keys(*o));
    if (!io.encrypt && (!io.key.key_file.empty() || io.key.passphrase)) {
      return InvalidArgumentError("a key was given without --encrypt");
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto backend, storage::LocalBackend::Create(dir));
    VMBACKUP_RETURN_IF_ERROR(repo::Repository::Init(*backend, io));
    VMBACKUP_ASSIGN_OR_RETURN(auto r, repo::Repository::Open(std::move(backend), io.key));
    if (o->json) {
      std::printf("%s\n", json{{"repository", dir},
                               {"id", r->id()},
                               {"chunk_size", r->chunk_size()},
                               {"encrypted", r->encrypted()}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf("created repository %s at %s (chunk size %s%s)\n", r->id().c_str(), dir.c_str(),
                  HumanBytes(r->chunk_size()).c_str(), r->encrypted() ? ", encrypted" : "");
    }
    return Status::Ok();
  });

  c = app.add_subcommand("list", "list restore points");
  common(c);
  c->add_option("--vm", o->vm, "only this VM");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(auto ids, repo::ListPoints(*r));
    json j = json::array();
    for (const auto& id : ids) {
      VMBACKUP_ASSIGN_OR_RETURN(repo::Point p, repo::LoadPoint(*r, id));
      if (!o->vm.empty() && p.vm_name != o->vm) continue;
      j.push_back(repo::PointToJson(p));
    }
    if (o->json) {
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("%-33s %-20s %-21s %5s %s\n", "point", "vm", "created", "disks", "flags");
    for (const auto& p : j) {
      std::printf("%-33s %-20s %-21s %5zu %s\n", p["id"].get<std::string>().c_str(),
                  p["vm"]["name"].get<std::string>().c_str(),
                  p["created"].get<std::string>().c_str(), p["disks"].size(),
                  p["protected"].get<bool>() ? "protected" : "");
    }
    return Status::Ok();
  });

  c = app.add_subcommand("show", "one restore point in detail");
  common(c);
  c->add_option("POINT", o->point)->required();
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(repo::Point p, repo::LoadPoint(*r, o->point));
    std::printf("%s\n", repo::PointToJson(p).dump(2).c_str());
    return Status::Ok();
  });

  c = app.add_subcommand("verify", "re-read and re-hash every chunk of the points (all, or one)");
  common(c);
  c->add_option("POINT", o->point, "only this point");
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    std::vector<std::string> ids;
    if (!o->point.empty()) ids.push_back(o->point);
    VMBACKUP_ASSIGN_OR_RETURN(repo::VerifyReport v, repo::Verify(*r, ids));
    json damaged = json::array();
    for (const auto& d : v.damaged) {
      damaged.push_back({{"point", d.point},
                         {"disk", d.disk_key},
                         {"offset", d.offset},
                         {"length", d.length},
                         {"error", d.error}});
    }
    if (o->json) {
      std::printf("%s\n", json{{"points", v.points},
                               {"chunks_checked", v.chunks_checked},
                               {"bytes_checked", v.bytes_checked},
                               {"damaged", damaged}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf("verified %llu points: %llu chunks, %s re-read and re-hashed\n",
                  (unsigned long long)v.points, (unsigned long long)v.chunks_checked,
                  HumanBytes(v.bytes_checked).c_str());
      for (const auto& d : v.damaged) {
        std::printf("DAMAGED: point %s disk %d bytes %llu+%llu: %s\n", d.point.c_str(), d.disk_key,
                    (unsigned long long)d.offset, (unsigned long long)d.length, d.error.c_str());
      }
    }
    if (!v.damaged.empty()) {
      return CorruptionError(StrFormat("%zu damaged ranges", v.damaged.size()));
    }
    return Status::Ok();
  });

  c = app.add_subcommand("check", "check the repository's structure (references, index, packs)");
  common(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    VMBACKUP_ASSIGN_OR_RETURN(repo::CheckReport report, repo::Check(*r));
    if (o->json) {
      std::printf("%s\n", json{{"packs", report.packs},
                               {"index_entries", report.index_entries},
                               {"points", report.points},
                               {"problems", report.problems},
                               {"notes", report.notes}}
                              .dump(2)
                              .c_str());
    } else {
      std::printf("checked %llu packs, %llu index entries, %llu points\n",
                  (unsigned long long)report.packs, (unsigned long long)report.index_entries,
                  (unsigned long long)report.points);
      for (const auto& n : report.notes) std::printf("note: %s\n", n.c_str());
      for (const auto& p : report.problems) std::printf("PROBLEM: %s\n", p.c_str());
    }
    if (!report.problems.empty())
      return CorruptionError(StrFormat("%zu problems", report.problems.size()));
    return Status::Ok();
  });

  c = app.add_subcommand("protect", "keep a restore point from prune");
  common(c);
  c->add_option("POINT", o->point)->required();
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(*o));
    return repo::ProtectPoint(*r, o->point);
  });
}

}  // namespace vmbackup::cli
