#include "restore_check/restore_check.h"

#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include "base/strings.h"
#include "files/fs_check.h"
#include "hv/libvirt/guest_agent.h"
#include "hv/libvirt/libvirt_xml.h"
#include "hv/libvirt/virt.h"
#include "io/posix_file.h"
#include "live/server_process.h"

namespace vmbackup::restore_check {
namespace {

namespace lv = hv::libvirt;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// What a console shows when the guest will not come up by itself.
constexpr const char* kFailurePatterns[] = {
    "Kernel panic - not syncing",
    "You are in emergency mode",
    "Give root password for maintenance",
    "UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY",
};

void Note(const Options& o, const std::string& text) {
  if (o.progress) o.progress(text);
}

json Check(const std::string& check, const std::string& target, bool ok, const std::string& detail,
           double seconds) {
  return {{"check", check},
          {"target", target},
          {"ok", ok},
          {"detail", detail},
          {"seconds", double(int64_t(seconds * 10)) / 10}};
}

// The end of the console log (its last MiB: patterns and tails look there).
std::string ReadConsole(const std::string& path) {
  auto text = io::ReadSmallFile(path, 64 << 20);
  if (!text) return "";
  return text->size() > (1u << 20) ? text->substr(text->size() - (1u << 20)) : *text;
}

// fsck: every file system of every disk of the point, over attached exports.
Status RunFsck(const repo::Point& point, const Options& o, json& checks) {
  VMBACKUP_ASSIGN_OR_RETURN(live::RunDir dir, live::RunDir::Make("restore-test"));
  std::vector<std::unique_ptr<live::ServerProcess>> servers;
  std::vector<std::string> sockets;
  for (const auto& d : point.disks) {
    live::ExportOptions eo;
    eo.plugin = o.instant.plugin;
    eo.repo_location = o.instant.repo_location;
    eo.s3_ca_file = o.instant.s3_ca_file;
    eo.point_id = point.id;
    eo.disk_key = d.key;
    eo.key = o.instant.key;
    eo.cache_mib = o.instant.cache_mib;
    eo.socket = dir / StrFormat("disk-%d.sock", d.key);
    eo.pidfile = dir / StrFormat("disk-%d.pid", d.key);
    eo.log_file = dir / StrFormat("disk-%d.log", d.key);
    VMBACKUP_ASSIGN_OR_RETURN(auto server, live::StartExport(eo));
    server->AddCleanup(eo.log_file);
    servers.push_back(std::move(server));
    sockets.push_back(eo.socket);
  }
  Note(o, StrFormat("fsck: starting libguestfs's appliance over %zu disk(s)", sockets.size()));
  VMBACKUP_ASSIGN_OR_RETURN(files::FsCheckReport report, files::CheckFileSystems(sockets));
  int checked = 0;
  for (const auto& c : report.checks) {
    const std::string disk = c.drive >= 0 && size_t(c.drive) < point.disks.size()
                                 ? StrFormat("disk %d ", point.disks[size_t(c.drive)].key)
                                 : "";
    const std::string target = disk + c.device + " (" + c.type + ")";
    if (!c.checked) {
      Note(o, "fsck: " + target + ": nothing to check");
      continue;
    }
    ++checked;
    Note(o, "fsck: " + target + ": " + (c.ok ? "ok" : "FAILED: " + c.detail));
    checks.push_back(Check("fsck", target, c.ok, c.ok ? c.checker : c.detail, c.seconds));
  }
  if (checked == 0) {
    checks.push_back(Check("fsck", "every disk", false,
                           "no file system found to check (the appliance saw none it knows)", 0));
  }
  return Status::Ok();
}

// Waits for the sandbox's guest to come up: the agent answers (when the definition has one),
// the ready pattern shows on the console (when given). Returns the check.
Result<json> WaitForGuest(virDomainPtr dom, bool agent, const std::string& console,
                          const Options& o, Clock::time_point started) {
  const auto deadline = started + std::chrono::seconds(o.boot_timeout_s);
  std::optional<std::regex> ready;
  if (!o.ready_pattern.empty()) ready.emplace(o.ready_pattern);
  bool agent_ok = !agent, console_ok = !ready;
  const std::string what = agent && ready ? "the guest agent and the ready pattern"
                           : agent        ? "the guest agent"
                                          : "the ready pattern on the console";
  for (;;) {
    if (o.cancel && o.cancel->load()) return CancelledError("test-restore interrupted");
    const std::string log = ReadConsole(console);
    for (const char* bad : kFailurePatterns) {
      const size_t at = log.find(bad);
      if (at != std::string::npos) {
        return Check("boot", "console", false,
                     std::string("the console shows \"") + bad +
                         "\": " + LastLines(log.substr(at > 2000 ? at - 2000 : 0), 6, " | "),
                     Since(started));
      }
    }
    if (!console_ok) console_ok = std::regex_search(log, *ready);
    if (!agent_ok) agent_ok = lv::AgentAnswers(dom);
    if (agent_ok && console_ok) {
      return Check("boot", agent ? "guest agent" : "console", true,
                   StrFormat("%s answered %.1f s after the start", what.c_str(), Since(started)),
                   Since(started));
    }
    int state = 0, reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) == 0) {
      if (state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_IOERROR) {
        return Check("boot", "disks", false,
                     "the guest paused on an I/O error reading its disk (the export failed)",
                     Since(started));
      }
      if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED) {
        return Check("boot", "domain", false,
                     "the guest stopped by itself; its console ended: " + LastLines(log, 4, " | "),
                     Since(started));
      }
    }
    if (Clock::now() >= deadline) {
      return Check("boot", agent ? "guest agent" : "console", false,
                   StrFormat("no answer from %s within %d s; the console ended: %s", what.c_str(),
                             o.boot_timeout_s, LastLines(log, 4, " | ").c_str()),
                   Since(started));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

json RunScript(virDomainPtr dom, const Options& o) {
  const auto t = Clock::now();
  auto r = lv::GuestExec(dom, o.interpreter, {}, o.script, o.script_timeout_s);
  if (!r) return Check("script", o.script_name, false, r.error().message(), Since(t));
  if (r->timed_out) {
    return Check("script", o.script_name, false,
                 StrFormat("still running after %d s", o.script_timeout_s), Since(t));
  }
  const bool ok = r->exit_code == 0 && r->signal == 0;
  std::string detail = r->signal ? StrFormat("ended by signal %d", r->signal)
                                 : StrFormat("exited with %d", r->exit_code);
  const std::string said = LastLines(ok ? r->out : r->err + "\n" + r->out, 4, " | ");
  if (!said.empty()) detail += ": " + said;
  return Check("script", o.script_name, ok, detail, Since(t));
}

// boot (and script): a sandboxed instant recovery of the point, removed at the end.
Status RunBoot(const repo::Point& point, const Options& o, json& checks) {
  instant::Options io = o.instant;
  io.sandbox = true;
  auto abandoned = instant::StopAbandonedSandboxes(io);
  if (abandoned) {
    for (const auto& n : *abandoned) Note(o, "removed the sandbox of a killed test: " + n);
  }
  const std::string tail = point.id.size() > 8 ? point.id.substr(point.id.size() - 8) : point.id;
  const std::string name = StrFormat("vmbackup-test-%s-%d", tail.c_str(), int(::getpid()));
  Note(o, "boot: starting " + name + " in a sandbox (no network)");
  const auto started = Clock::now();
  auto rep = instant::Start(point, name, io);
  struct Remove {
    const std::string& name;
    const instant::Options& io;
    ~Remove() { instant::Stop(name, io).IgnoreError(); }  // Start removed it if it failed
  } remove{name, io};
  if (!rep) {
    checks.push_back(Check("boot", "domain", false,
                           "the VM did not start: " + rep.error().message(), Since(started)));
    return Status::Ok();
  }
  VMBACKUP_ASSIGN_OR_RETURN(lv::ConnectPtr conn, lv::Connect(io.uri));
  lv::DomainPtr dom(virDomainLookupByUUIDString(conn.get(), rep->uuid.c_str()));
  if (!dom) return lv::LastError("find the sandbox " + name);
  VMBACKUP_ASSIGN_OR_RETURN(lv::DomainDesc desc, lv::ParseDomainXml(point.config));
  VMBACKUP_ASSIGN_OR_RETURN(
      json boot, WaitForGuest(dom.get(), desc.has_agent_channel, rep->console_log, o, started));
  Note(o, std::string("boot: ") + (boot["ok"].get<bool>() ? "ok, " : "FAILED, ") +
              boot["detail"].get<std::string>());
  checks.push_back(boot);
  if (!o.script.empty()) {
    if (!boot["ok"].get<bool>()) {
      checks.push_back(Check("script", o.script_name, false, "not run: the guest did not boot", 0));
    } else {
      Note(o, "script: running " + o.script_name + " in the guest");
      json script = RunScript(dom.get(), o);
      Note(o, std::string("script: ") + (script["ok"].get<bool>() ? "ok, " : "FAILED, ") +
                  script["detail"].get<std::string>());
      checks.push_back(script);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<repo::RestoreTest> Run(const repo::Point& point, const Options& o) {
  if (!o.boot && !o.fsck) return InvalidArgumentError("nothing to test: ask for --boot or --fsck");
  if (!o.script.empty() && !o.boot)
    return InvalidArgumentError("--script runs in the booted guest: it needs --boot");
  if (o.boot) {
    auto desc = lv::ParseDomainXml(point.config);
    if (!desc) {
      return NotSupportedError("point " + point.id +
                               " was not taken through libvirt: --boot needs its domain "
                               "definition (use --fsck alone)");
    }
    if (!desc->has_agent_channel && o.ready_pattern.empty()) {
      return InvalidArgumentError(
          "the VM of point " + point.id +
          " has no guest agent channel: give --ready-pattern (a regex its serial console shows "
          "once it is up, such as 'login:')");
    }
    if (!desc->has_agent_channel && !o.script.empty())
      return InvalidArgumentError("--script runs through the guest agent, which this VM lacks");
    if (!o.ready_pattern.empty()) {
      try {
        std::regex check(o.ready_pattern);
      } catch (const std::regex_error& e) {
        return InvalidArgumentError("--ready-pattern '" + o.ready_pattern + "': " + e.what());
      }
    }
  }
  repo::RestoreTest t;
  t.point = point.id;
  t.time = UtcNowRfc3339();
  if (o.fsck) VMBACKUP_RETURN_IF_ERROR(RunFsck(point, o, t.checks));
  if (o.cancel && o.cancel->load()) return CancelledError("test-restore interrupted");
  if (o.boot) VMBACKUP_RETURN_IF_ERROR(RunBoot(point, o, t.checks));
  t.ok = true;
  int fs = 0;
  std::string passed;
  for (const auto& c : t.checks) {
    const std::string check = c.value("check", "");
    if (!c.value("ok", false)) {
      if (t.ok) t.summary = check + " " + c.value("target", "") + ": " + c.value("detail", "");
      t.ok = false;
    }
    if (check == "fsck") ++fs;
  }
  if (t.ok) {
    std::vector<std::string> parts;
    if (o.fsck) parts.push_back(StrFormat("fsck of %d file system%s", fs, fs == 1 ? "" : "s"));
    if (o.boot) parts.push_back("boot");
    if (!o.script.empty()) parts.push_back("script " + o.script_name);
    for (const auto& p : parts) t.summary += (t.summary.empty() ? "" : ", ") + p;
    t.summary += ": ok";
  }
  return t;
}

}  // namespace vmbackup::restore_check
