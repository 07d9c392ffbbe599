#include "cli/copy_commands.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/cancel.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "repo/copy.h"
#include "repo/maintenance.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

struct CopyOpts {
  RepoOpts from, to;
  std::vector<std::string> points;
  std::string vm, since;
  bool no_verify = false;
};

// --from-key-file, --to-key-file, ...: the key options of one side.
void AddSideOptions(CLI::App* c, RepoOpts& o, const std::string& side, const std::string& what) {
  c->add_option("--" + side, o.repo,
                what + ": a folder, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]")
      ->required();
  c->add_option("--" + side + "-key-file", o.key_file, "key file of " + what);
  c->add_option("--" + side + "-passphrase-file", o.passphrase_file,
                "file holding the passphrase of " + what + " (or VMBACKUP_PASSPHRASE)");
  c->add_option("--" + side + "-password-command", o.password_command,
                "command that prints the passphrase of " + what);
}

// The points to copy, oldest first (parents before their children).
Result<std::vector<std::string>> Selected(repo::Repository& from, const CopyOpts& o) {
  std::vector<std::string> ids;
  if (!o.points.empty()) {
    for (const std::string& text : o.points) {
      VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(from, text, o.vm));
      ids.push_back(id);
    }
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(ids, repo::ListPoints(from));
  }
  std::string since;
  if (!o.since.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(int64_t t, ParseTimeOrAge(o.since, int64_t(::time(nullptr))));
    since = UtcRfc3339(t);
  }
  std::vector<std::string> out;
  for (const std::string& id : ids) {
    if (!o.vm.empty() || !since.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(repo::Point p, repo::LoadPoint(from, id));
      if (!o.vm.empty() && p.vm_name != o.vm) continue;
      if (!since.empty() && p.created < since) continue;
    }
    out.push_back(id);
  }
  std::sort(out.begin(), out.end());  // ids begin with their creation time
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty()) return NotFoundError("no restore point of the source matches");
  return out;
}

Status RunCopy(CopyOpts& o) {
  o.from.s3_ca_file = o.to.s3_ca_file;
  VMBACKUP_ASSIGN_OR_RETURN(LockedRepo from, OpenLocked(o.from, false, "copy (source)"));
  VMBACKUP_ASSIGN_OR_RETURN(LockedRepo to, OpenLocked(o.to, false, "copy"));
  if (from.repo->id() == to.repo->id())
    return InvalidArgumentError("--from and --to name the same repository");
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<std::string> ids, Selected(*from.repo, o));
  std::atomic<bool>* cancel = CancelOnSignals();
  const auto t0 = std::chrono::steady_clock::now();
  const storage::TransferStats sent0 = to.repo->backend().transfer_stats();
  const storage::TransferStats got0 = from.repo->backend().transfer_stats();
  json points = json::array();
  std::vector<std::string> copied;
  repo::CopyReport total;
  std::atomic<uint64_t> done{0};
  Status status = AsJob(o.to, *to.repo, "copy", [&]() -> Status {
    Ticker ticker([&](double s) {
      return StrFormat("copy: %zu of %zu points, %s handled, %s/s", points.size(), ids.size(),
                       HumanBytes(done).c_str(),
                       HumanBytes(s > 0 ? uint64_t(double(done) / s) : 0).c_str());
    });
    for (const std::string& id : ids) {
      if (cancel->load()) return CancelledError("copy interrupted: run it again to go on");
      VMBACKUP_ASSIGN_OR_RETURN(repo::CopyReport r,
                                repo::CopyPoint(*from.repo, *to.repo, id, &done));
      if (r.copied) copied.push_back(id);
      total.chunks_read += r.chunks_read;
      total.chunks_new += r.chunks_new;
      total.bytes_read += r.bytes_read;
      total.bytes_new += r.bytes_new;
      points.push_back({{"id", id},
                        {"copied", r.copied},
                        {"parent_kept", r.parent_kept},
                        {"chunks_read", r.chunks_read},
                        {"chunks_new", r.chunks_new},
                        {"chunks_unchanged", r.chunks_unchanged},
                        {"bytes_read", r.bytes_read},
                        {"bytes_new", r.bytes_new}});
    }
    return Status::Ok();
  });
  VMBACKUP_RETURN_IF_ERROR(status);
  // What was written is read back from the target: every chunk re-hashed.
  repo::VerifyReport verified;
  if (!o.no_verify && !copied.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(verified, repo::Verify(*to.repo, copied));
    if (!verified.damaged.empty()) {
      const auto& d = verified.damaged[0];
      return CorruptionError(StrFormat(
          "the copy of point %s reads back damaged (disk %d at %llu: %s); 'vmbackup verify' "
          "on the target lists all of it",
          d.point.c_str(), d.disk_key, (unsigned long long)d.offset, d.error.c_str()));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const storage::TransferStats sent = to.repo->backend().transfer_stats() - sent0;
  const storage::TransferStats got = from.repo->backend().transfer_stats() - got0;
  if (Flags().json) {
    std::printf("%s\n", json{{"points", points},
                             {"copied", copied.size()},
                             {"chunks_read", total.chunks_read},
                             {"chunks_new", total.chunks_new},
                             {"bytes_read", total.bytes_read},
                             {"bytes_new", total.bytes_new},
                             {"verified_bytes", verified.bytes_checked},
                             {"seconds", seconds},
                             {"target_transfer", TransferJson(sent)},
                             {"source_transfer", TransferJson(got)}}
                            .dump(2)
                            .c_str());
    return Status::Ok();
  }
  std::printf(
      "copied %zu of %zu points (the others were there already) in %.2f s: %llu chunks "
      "read (%s), %llu new in the target (%s)%s\n",
      copied.size(), ids.size(), seconds, (unsigned long long)total.chunks_read,
      HumanBytes(total.bytes_read).c_str(), (unsigned long long)total.chunks_new,
      HumanBytes(total.bytes_new).c_str(),
      copied.empty() || o.no_verify
          ? ""
          : (", " + HumanBytes(verified.bytes_checked) + " read back and verified").c_str());
  if (sent.requests) std::printf("  target traffic: %s\n", TransferText(sent).c_str());
  if (got.requests) std::printf("  source traffic: %s\n", TransferText(got).c_str());
  return Status::Ok();
}

}  // namespace

void AddCopyCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CopyOpts>();
  CLI::App* c = app.add_subcommand(
      "copy",
      "copy restore points between repositories (folder or S3, any keys): only the chunks the "
      "target lacks are stored, ids and parents stay, a rerun resumes, the copies are verified");
  AddSideOptions(c, o->from, "from", "the source repository");
  AddSideOptions(c, o->to, "to", "the target repository");
  c->add_option("--s3-ca-file", o->to.s3_ca_file,
                "PEM bundle of the CA that signed an S3 server's certificate (else the system's)");
  c->add_option("POINT", o->points, "only these points (ids, unique prefixes, or latest)");
  c->add_option("--vm", o->vm, "only this VM's points");
  c->add_option("--since", o->since,
                "only points created at or after this time: 2026-11-22, 2026-11-22T08:00+02:00 "
                "(no zone: UTC), or an age such as 7d");
  c->add_flag("--no-verify", o->no_verify, "do not read the copies back");
  Bind(c, exit_code, [o]() -> Status { return RunCopy(*o); });
}

}  // namespace vmbackup::cli
