// Shared plumbing of the command-line tools: exit codes, error reporting, and a stdout
// sink that leaves holes when stdout is a regular file.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>

#include "base/result.h"
#include "format/vmdk/disk.h"

namespace vmbackup::cli {

// Exit codes (documented in docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed; stderr says why
inline constexpr int kExitUsage = 2;    // bad command line
inline constexpr int kExitLocked = 3;   // the repository or the VM is in use by another job
inline constexpr int kExitNoRepository = 10;
inline constexpr int kExitWrongKey = 11;  // no key, or a wrong one
inline constexpr int kExitInterrupted = 130;

// Flags both programs take before or after the subcommand: --json, -q/--quiet, -v/--verbose
// (and --version).
struct GlobalFlags {
  bool json = false;
  int verbosity = 1;  // 0: -q (errors only, no progress), 1: normal, 2: -v
};
GlobalFlags& Flags();
// Adds those flags to `app`, and lets every subcommand take them (CLI11 fallthrough). Call
// before adding subcommands.
void AddGlobalFlags(CLI::App& app, const std::string& version);
// Notes for the user on stderr ("vmbackup: removed a stale lock ..."): silent with -q.
void Note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Prints "<program>: <message>" to stderr and returns the exit code for `s`.
int ReportError(const Status& s);

// Makes `fn` the callback of `cmd`; its status becomes the exit code (docs/cli.md).
inline int ExitCodeOf(const Status& s) { return s.ok() ? kExitOk : ReportError(s); }
template <class Fn>
void Bind(CLI::App* cmd, int* exit_code, Fn fn) {
  cmd->callback([exit_code, fn] { *exit_code = ExitCodeOf(fn()); });
}

// Redraws a one-line display on stderr about 4 times a second while it lives (when stderr is
// a terminal, and neither --json nor -q was given); ends the line when destroyed.
class Ticker {
 public:
  explicit Ticker(std::function<std::string(double seconds)> line);
  ~Ticker();
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  std::function<std::string(double)> line_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Writes a byte stream to a file descriptor. When the descriptor is a regular file opened
// without O_APPEND, zero runs are skipped with lseek (leaving holes) and the file is sized
// at Finish(); otherwise every byte is written.
class StreamSink {
 public:
  explicit StreamSink(int fd);
  Status Write(std::span<const uint8_t> data);
  Status WriteZeros(uint64_t length);
  Status Finish();

 private:
  int fd_;
  bool seekable_ = false;
  uint64_t pos_ = 0;    // bytes written or skipped since the start
  uint64_t start_ = 0;  // file offset where output began
};

// Where an nbdkit plugin of ours is (the embedded host's by default; nbdkit-vmbackup-plugin.so
// serves restore points): next to the executable (the build tree), or in the installed library
// folder (VMBACKUP_PLUGIN_RELDIR from the executable's folder); "" when neither has it.
std::string PluginPath(const std::string& name = "nbdkit-vmhost-plugin.so");

// HOST:PORT (or [IPV6]:PORT) of an option such as --listen; port 0 (any free port) only when
// `allow_any_port`.
Result<std::pair<std::string, int>> ParseHostPort(const std::string& text,
                                                  const std::string& option, bool allow_any_port);

// Writes [offset, offset+length) of a disk to `out`, skipping what no layer holds.
Status CopyDiskRange(vmdk::Disk& disk, uint64_t offset, uint64_t length, StreamSink& out);

// Parses the command line and runs the chosen subcommand; returns the process exit code
// (the subcommand's, or kExitUsage for a bad command line). `prog` prefixes internal errors.
int RunApp(CLI::App& app, int argc, char** argv, const int& exit_code, const char* prog);

}  // namespace vmbackup::cli
