// `help [COMMAND...]` (the --help text of any command), `help --man` (a manual page made of
// every command's --help text) and `completion bash` (a bash completion script), all generated
// from the command definitions themselves, so they never disagree with --help.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace vmbackup::cli {

// Call after every other command is added.
void AddHelpCommands(CLI::App& app, int* exit_code, const std::string& prog);

}  // namespace vmbackup::cli
