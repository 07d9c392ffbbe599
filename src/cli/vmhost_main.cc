// vmhost: the embedded host, VMs on a local datastore in VMware's formats.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/output.h"
#include "cli/vmhost_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"vmhost: VMs on a local datastore in VMware's formats, with snapshots and CBT"};
  app.require_subcommand(1);
  int exit_code = vmbackup::cli::kExitOk;
  vmbackup::cli::AddVmhostCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : vmbackup::cli::kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmhost: internal error: %s\n", e.what());
    return vmbackup::cli::kExitFailure;
  }
  return exit_code;
}
