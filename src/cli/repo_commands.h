// `vmbackup init|list|show|protect|verify|check|prune|gc|jobs`: the repository commands.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddRepoCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
