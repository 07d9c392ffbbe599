// vmbackup: image-level virtual machine backup and restore.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/output.h"
#include "cli/vmdk_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"vmbackup: image-level virtual machine backup and restore"};
  app.require_subcommand(1);
  int exit_code = vmbackup::cli::kExitOk;
  vmbackup::cli::AddVmdkCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : vmbackup::cli::kExitUsage;
  } catch (const std::exception& e) {
    // Last resort: vmbackup's own code returns errors as values.
    std::fprintf(stderr, "vmbackup: internal error: %s\n", e.what());
    return vmbackup::cli::kExitFailure;
  }
  return exit_code;
}
