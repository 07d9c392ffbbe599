// vmbackup: image-level virtual machine backup and restore.
#include <CLI/CLI.hpp>

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

int main(int argc, char** argv) {
  vmbackup::repo::CryptoWarmUp crypto_warm_up;  // meanwhile the command line is built
  CLI::App app{"vmbackup: image-level virtual machine backup and restore"};
  app.require_subcommand(1);
  int exit_code = vmbackup::cli::kExitOk;
  vmbackup::cli::AddGlobalFlags(app, VMBACKUP_VERSION);
  vmbackup::cli::AddVmdkCommands(app, &exit_code);
  vmbackup::cli::AddRepoCommands(app, &exit_code);
  vmbackup::cli::AddBackupCommands(app, &exit_code);
  vmbackup::cli::AddReportCommands(app, &exit_code);
  vmbackup::cli::AddCopyCommands(app, &exit_code);
  vmbackup::cli::AddServeCommands(app, &exit_code);
  vmbackup::cli::AddFilesCommands(app, &exit_code);
  vmbackup::cli::AddInstantCommands(app, &exit_code);
  vmbackup::cli::AddTestRestoreCommands(app, &exit_code);
  vmbackup::cli::AddVsphereCommands(app, &exit_code);
  vmbackup::cli::AddKeyCommands(app, &exit_code);
  vmbackup::cli::AddHelpCommands(app, &exit_code, "vmbackup");
  return vmbackup::cli::RunApp(app, argc, argv, exit_code, "vmbackup");
}
