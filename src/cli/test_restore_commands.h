// `vmbackup test-restore POINT [--boot] [--fsck] [--script F]`: a point restored for real and
// checked, the result recorded in the repository (restore_check::, repo/restore_tests.h).
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddTestRestoreCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
