// Running a helper program (qemu-img, for one) and reading what it prints. No shell: the
// arguments go to the program as they are, so nothing in them is interpreted.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup {

struct CommandOutput {
  int exit_code = 0;
  std::string out, err;
};

// Runs argv[0] (found on PATH) with stdin from /dev/null and waits for it, at most
// `timeout_seconds` (then it is killed and the answer is kUnavailable). Output beyond
// 16 MiB per stream is dropped. kUnavailable when the program cannot be started.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, int timeout_seconds = 300);

// RunCommand that wants exit code 0: otherwise kIOError naming the program, its exit code and
// the last line it wrote to stderr. Returns stdout.
Result<std::string> RunCommandOk(const std::vector<std::string>& argv, int timeout_seconds = 300);

}  // namespace vmbackup
