// vmbackup: image-level virtual machine backup and restore.
#include <CLI/CLI.hpp>
#include <initializer_list>
#include <string_view>

#include "cli/backup_commands.h"
#include "cli/copy_commands.h"
#include "cli/files_commands.h"
#include "cli/help_commands.h"
#include "cli/instant_commands.h"
#include "cli/key_commands.h"
#include "cli/output.h"
#include "cli/repo_commands.h"
#include "cli/report_commands.h"
#include "cli/serve_commands.h"
#include "cli/source_access.h"
#include "cli/test_restore_commands.h"
#include "cli/vmdk_commands.h"
#include "repo/crypto.h"

namespace {

using AddCommands = void (*)(CLI::App&, int*);

// The command groups, each with the top-level commands it adds. A run whose first word is one
// of these builds that group alone: building all of them (some 400 options, their validators
// and help texts in fresh memory) took 2.5-7 ms of every start. Anything else (help, a flag
// first, a typo) builds every group, and so does a name this table gets wrong (main checks
// that the group it built has the command).
struct Group {
  AddCommands add;
  std::initializer_list<std::string_view> commands;
};
const Group kGroups[] = {
    {vmbackup::cli::AddVmdkCommands, {"vmdk"}},
    {vmbackup::cli::AddRepoCommands,
     {"init", "list", "jobs", "show", "verify", "check", "prune", "gc", "protect", "forget"}},
    {vmbackup::cli::AddBackupCommands, {"backup", "restore"}},
    {vmbackup::cli::AddReportCommands, {"stats", "diff"}},
    {vmbackup::cli::AddCopyCommands, {"copy"}},
    {vmbackup::cli::AddServeCommands, {"serve", "mount", "umount"}},
    {vmbackup::cli::AddFilesCommands, {"files"}},
    {vmbackup::cli::AddInstantCommands, {"instant"}},
    {vmbackup::cli::AddTestRestoreCommands, {"test-restore"}},
    {vmbackup::cli::AddVsphereCommands, {"vsphere"}},
    {vmbackup::cli::AddKeyCommands, {"key"}},
};

const Group* GroupOf(int argc, char** argv) {
  if (argc < 2) return nullptr;
  for (const Group& g : kGroups)
    for (std::string_view c : g.commands)
      if (c == argv[1]) return &g;
  return nullptr;
}

bool HasCommand(CLI::App& app, const std::string& name) {
  try {
    return app.get_subcommand(name) != nullptr;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  vmbackup::repo::CryptoWarmUp crypto_warm_up;  // meanwhile the command line is built
  CLI::App app{"vmbackup: image-level virtual machine backup and restore"};
  app.require_subcommand(1);
  int exit_code = vmbackup::cli::kExitOk;
  vmbackup::cli::AddGlobalFlags(app, VMBACKUP_VERSION);
  const Group* only = GroupOf(argc, argv);
  if (only) only->add(app, &exit_code);
  if (!only || !HasCommand(app, argv[1])) {
    for (const Group& g : kGroups)
      if (&g != only) g.add(app, &exit_code);
    vmbackup::cli::AddHelpCommands(app, &exit_code, "vmbackup");
  }
  return vmbackup::cli::RunApp(app, argc, argv, exit_code, "vmbackup");
}
