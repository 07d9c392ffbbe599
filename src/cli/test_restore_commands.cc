#include "cli/test_restore_commands.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/cancel.h"
#include "cli/instant_commands.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "io/posix_file.h"
#include "repo/restore_tests.h"
#include "restore_check/restore_check.h"

namespace vmbackup::cli {
namespace {

struct TestOpts {
  RepoOpts repo;
  bool boot = false, fsck = false;
  std::string script, source, ready_pattern, disk_dir, interpreter = "/bin/sh";
  int boot_timeout = 600, script_timeout = 600;
};

Status TestRestore(const TestOpts& o) {
  restore_check::Options ro;
  ro.fsck = o.fsck;
  ro.boot = o.boot;
  if (!o.boot && !o.fsck) ro.fsck = true;  // neither asked: what runs everywhere
  if (!o.script.empty()) {
    auto text = io::ReadSmallFile(o.script, 1 << 20);
    if (!text) return text.error().WithContext("--script");
    ro.script = *text;
    ro.script_name = o.script.substr(o.script.rfind('/') + 1);
  }
  ro.interpreter = o.interpreter;
  ro.boot_timeout_s = o.boot_timeout;
  ro.script_timeout_s = o.script_timeout;
  ro.ready_pattern = o.ready_pattern;
  ro.instant = InstantOptions(o.source);
  ro.instant.overlay_dir = o.disk_dir;
  ro.progress = [](const std::string& line) { Note("%s", line.c_str()); };
  // The shared lock for the whole test (the exports take their own too): gc waits.
  VMBACKUP_ASSIGN_OR_RETURN(LockedRepo r, OpenLocked(o.repo, false, "test-restore"));
  VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r.repo, o.repo.point, o.repo.vm));
  VMBACKUP_ASSIGN_OR_RETURN(repo::Point point, repo::LoadPoint(*r.repo, id));
  ro.instant.repo_location = RepoLocation(o.repo);
  ro.instant.s3_ca_file = o.repo.s3_ca_file;
  ro.instant.key = r.key;
  ro.cancel = CancelOnSignals();  // the test ends early; what it started is removed
  VMBACKUP_ASSIGN_OR_RETURN(repo::RestoreTest t, restore_check::Run(point, ro));
  VMBACKUP_RETURN_IF_ERROR(repo::RecordRestoreTest(*r.repo, t));
  if (Flags().json) {
    std::printf("%s\n", nlohmann::json{{"point", t.point},
                                       {"time", t.time},
                                       {"ok", t.ok},
                                       {"summary", t.summary},
                                       {"checks", t.checks}}
                            .dump(2)
                            .c_str());
  } else {
    for (const auto& c : t.checks) {
      std::printf("%-6s %-7s %s: %s\n", c.value("ok", false) ? "ok" : "FAILED",
                  c.value("check", "").c_str(), c.value("target", "").c_str(),
                  c.value("detail", "").c_str());
    }
    std::printf("point %s: %s\n", t.point.c_str(), t.ok ? t.summary.c_str() : "FAILED");
  }
  if (!t.ok)
    return FailedPreconditionError("the restore test of point " + id + " failed: " + t.summary);
  return Status::Ok();
}

}  // namespace

void AddTestRestoreCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<TestOpts>();
  CLI::App* c = app.add_subcommand(
      "test-restore",
      "restore a point for real and check it (file systems, a boot in a sandbox, a script in "
      "the guest); the result is recorded on the point, and list shows it");
  AddRepoOptions(c, o->repo);
  AddPointArgument(c, o->repo);
  c->add_flag("--fsck", o->fsck,
              "check every file system read-only in libguestfs's appliance (the default)");
  c->add_flag("--boot", o->boot,
              "boot the VM in a sandbox (libvirt, no network, throwaway overlays) and wait for "
              "its guest agent or --ready-pattern");
  c->add_option("--script", o->script,
                "run this script in the booted guest through its agent (fed to --interpreter "
                "on standard input); exit 0 passes. Needs --boot");
  c->add_option("--interpreter", o->interpreter,
                "the guest's program for --script (default /bin/sh)");
  c->add_option("--ready-pattern", o->ready_pattern,
                "a regex the guest's serial console shows once it is up (needed when the VM has "
                "no guest agent)");
  c->add_option("--boot-timeout", o->boot_timeout, "seconds the boot may take (default 600)")
      ->check(CLI::PositiveNumber);
  c->add_option("--script-timeout", o->script_timeout, "seconds the script may take (default 600)")
      ->check(CLI::PositiveNumber);
  c->add_option("--source", o->source, "the libvirt URI to boot under (default qemu:///system)");
  c->add_option("--disk-dir", o->disk_dir,
                "where the throwaway overlays go (default: libvirt's pool)");
  Bind(c, exit_code, [o]() -> Status { return TestRestore(*o); });
}

}  // namespace vmbackup::cli
