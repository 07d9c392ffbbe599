#include "cli/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <exception>
#include <vector>

#include "base/strings.h"

namespace vmbackup::cli {

GlobalFlags& Flags() {
  static GlobalFlags flags;
  return flags;
}

namespace {
const char* g_prog = "vmbackup";
}

void AddGlobalFlags(CLI::App& app, const std::string& version) {
  app.fallthrough();
  app.set_version_flag("--version", version);
  app.add_flag("--json", Flags().json, "machine-readable output");
  app.add_flag_callback(
      "-q,--quiet", [] { Flags().verbosity = 0; },
      "print nothing but errors (no progress, no notes)");
  app.add_flag_callback(
      "-v,--verbose", [] { Flags().verbosity = 2; }, "say more");
}

void Note(const char* fmt, ...) {
  if (Flags().verbosity == 0) return;
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%s: ", g_prog);
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

int ReportError(const Status& s) {
  std::fprintf(stderr, "%s: %s\n", g_prog, s.message().c_str());
  switch (s.code()) {
    case ErrorCode::kInvalidArgument: return kExitUsage;
    case ErrorCode::kLocked: return kExitLocked;
    case ErrorCode::kNoRepository: return kExitNoRepository;
    case ErrorCode::kUnauthenticated: return kExitWrongKey;
    case ErrorCode::kCancelled: return kExitInterrupted;
    default: return kExitFailure;
  }
}

Ticker::Ticker(std::function<std::string(double)> line) : line_(std::move(line)) {
  if (Flags().json || Flags().verbosity == 0 || !::isatty(2)) return;
  thread_ = std::thread([this] {
    const auto t0 = std::chrono::steady_clock::now();
    auto draw = [&] {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\r%s\033[K", line_(s).c_str());
      std::fflush(stderr);
    };
    while (!stop_) {
      draw();
      for (int i = 0; i < 25 && !stop_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    draw();
    std::fprintf(stderr, "\n");
  });
}

Ticker::~Ticker() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

StreamSink::StreamSink(int fd) : fd_(fd) {
  struct stat st;
  int flags = ::fcntl(fd, F_GETFL);
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flags >= 0 && !(flags & O_APPEND)) {
    off_t here = ::lseek(fd, 0, SEEK_CUR);
    if (here >= 0) {
      seekable_ = true;
      start_ = uint64_t(here);
    }
  }
}

Status StreamSink::Write(std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write output", errno);
    }
    done += size_t(n);
  }
  pos_ += data.size();
  return Status::Ok();
}

Status StreamSink::WriteZeros(uint64_t length) {
  if (seekable_) {
    if (::lseek(fd_, off_t(length), SEEK_CUR) < 0) return PosixError("seek output", errno);
    pos_ += length;
    return Status::Ok();
  }
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  while (length > 0) {
    size_t n = size_t(std::min<uint64_t>(length, zeros.size()));
    VMBACKUP_RETURN_IF_ERROR(Write({zeros.data(), n}));
    length -= n;
  }
  return Status::Ok();
}

Status StreamSink::Finish() {
  if (seekable_) {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return PosixError("stat output", errno);
    uint64_t end = start_ + pos_;
    if (uint64_t(st.st_size) < end && ::ftruncate(fd_, off_t(end)) != 0) {
      return PosixError("extend output", errno);
    }
  }
  return Status::Ok();
}

std::string PluginPath(const std::string& name) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string dir(buf, size_t(n));
  dir = dir.substr(0, dir.rfind('/'));
  for (const std::string& where : {dir, dir + "/" + VMBACKUP_PLUGIN_RELDIR}) {
    std::string path = where + "/" + name;
    if (::access(path.c_str(), R_OK) == 0) return path;
  }
  return "";
}

Result<std::pair<std::string, int>> ParseHostPort(const std::string& text,
                                                  const std::string& option, bool allow_any_port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return InvalidArgumentError(option + " wants HOST:PORT, not '" + text + "'");
  auto port = ParseUint(text.substr(colon + 1));
  if (!port || *port > 65535 || (*port == 0 && !allow_any_port))
    return InvalidArgumentError(option + ": bad port in '" + text + "'");
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::make_pair(host, int(*port));
}

Status CopyDiskRange(vmdk::Disk& disk, uint64_t offset, uint64_t length, StreamSink& out) {
  if (offset > disk.size() || length > disk.size() - offset) {
    return InvalidArgumentError(StrFormat(
        "range %llu+%llu lies past the end of the disk (%llu bytes)", (unsigned long long)offset,
        (unsigned long long)length, (unsigned long long)disk.size()));
  }
  std::vector<vmdk::ChainRun> runs;
  if (length) VMBACKUP_RETURN_IF_ERROR(disk.MapChain(offset, length, &runs));
  constexpr uint64_t kChunk = 8 << 20;
  std::vector<uint8_t> buf;
  for (const auto& r : runs) {
    if (r.state != vmdk::BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(out.WriteZeros(r.length));
      continue;
    }
    for (uint64_t pos = r.offset; pos < r.offset + r.length;) {
      uint64_t n = std::min(kChunk, r.offset + r.length - pos);
      buf.resize(n);
      VMBACKUP_RETURN_IF_ERROR(disk.ReadAt(pos, buf));
      VMBACKUP_RETURN_IF_ERROR(out.Write(buf));
      pos += n;
    }
  }
  return out.Finish();
}

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// ", did you mean 'X'?" for the closest candidate within two edits (or a prefix), else "".
std::string Suggest(const std::string& word, const std::vector<std::string>& candidates,
                    const std::string& dashes) {
  std::string best;
  size_t best_d = 3;
  for (const auto& c : candidates) {
    size_t d = c.rfind(word, 0) == 0 ? 1 : EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best.empty() ? "" : "; did you mean '" + dashes + best + "'?";
}

// Names unknown options and commands before CLI11 parses, so a typo is what the user hears
// about (CLI11 would first complain that a required option is missing, or that an argument was
// "not expected").
Status CheckWords(CLI::App& app, int argc, char** argv, const char* prog) {
  std::vector<CLI::App*> chain = {&app};
  std::string path = prog;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    std::vector<const CLI::Option*> options;
    for (CLI::App* a : chain)
      for (const CLI::Option* opt : a->get_options()) options.push_back(opt);
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      const std::string name = arg.substr(2, arg.find('=') - 2);
      const CLI::Option* found = nullptr;
      std::vector<std::string> names;
      for (const CLI::Option* opt : options) {
        for (const auto& l : opt->get_lnames()) {
          names.push_back(l);
          if (l == name) found = opt;
        }
      }
      if (!found) {
        return InvalidArgumentError("'" + path + "' has no option --" + name +
                                    Suggest(name, names, "--") + " (see " + path + " --help)");
      }
      if (arg.find('=') == std::string::npos && found->get_expected_min() > 0) ++i;  // its value
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      const std::string name = arg.substr(1, 1);
      const CLI::Option* found = nullptr;
      for (const CLI::Option* opt : options)
        for (const auto& s : opt->get_snames())
          if (s == name) found = opt;
      if (!found) return InvalidArgumentError("'" + path + "' has no option -" + name);
      if (arg.size() == 2 && found->get_expected_min() > 0) ++i;
      continue;
    }
    // A word: a subcommand of the innermost command, or one of its positional values.
    CLI::App* cur = chain.back();
    auto subs = cur->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) continue;
    CLI::App* next = nullptr;
    std::vector<std::string> names;
    for (CLI::App* s : subs) {
      names.push_back(s->get_name());
      if (s->check_name(arg)) next = s;
    }
    if (next) {
      chain.push_back(next);
      path += " " + next->get_name();
      continue;
    }
    bool takes_words = false;
    for (const CLI::Option* opt : cur->get_options())
      takes_words = takes_words || opt->get_positional();
    if (!takes_words) {
      return InvalidArgumentError("unknown command '" + arg + "' for '" + path + "'" +
                                  Suggest(arg, names, "") + " (see " + path + " --help)");
    }
  }
  return Status::Ok();
}

}  // namespace

int RunApp(CLI::App& app, int argc, char** argv, const int& exit_code, const char* prog) {
  g_prog = prog;
  if (Status words = CheckWords(app, argc, argv, prog); !words.ok()) return ReportError(words);
  // Everything the tools create (repository objects, restored images, the files qemu-img writes
  // for them, the catalog) is private to the user whatever the umask, as restic does; the code
  // asks for 0600/0700 too, this covers the programs it runs.
  ::umask(077);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  } catch (const std::exception& e) {
    // Last resort: our own code returns errors as values.
    std::fprintf(stderr, "%s: internal error: %s\n", prog, e.what());
    return kExitFailure;
  }
  return exit_code;
}

}  // namespace vmbackup::cli
