// vmhost: the embedded host, VMs on a local datastore in VMware's formats.
#include <CLI/CLI.hpp>

#include "cli/help_commands.h"
#include "cli/output.h"
#include "cli/vmhost_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"vmhost: VMs on a local datastore in VMware's formats, with snapshots and CBT"};
  app.require_subcommand(1);
  int exit_code = vmbackup::cli::kExitOk;
  vmbackup::cli::AddGlobalFlags(app, VMBACKUP_VERSION);
  vmbackup::cli::AddVmhostCommands(app, &exit_code);
  vmbackup::cli::AddHelpCommands(app, &exit_code, "vmhost");
  return vmbackup::cli::RunApp(app, argc, argv, exit_code, "vmhost");
}
