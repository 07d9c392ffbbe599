#include "cli/instant_commands.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "instant/instant.h"
#include "repo/point.h"

namespace vmbackup::cli {
namespace {

// libvirt:///system is QEMU's system instance, as for backups.
std::string LibvirtUri(const std::string& source) {
  if (source.rfind("libvirt://", 0) == 0) return "qemu://" + source.substr(10);
  return source;
}

bool IsLibvirtUri(const std::string& uri) {
  return uri.rfind("qemu", 0) == 0 || uri.rfind("libvirt://", 0) == 0;
}

}  // namespace

instant::Options InstantOptions(const std::string& uri) {
  instant::Options o;
  o.uri = LibvirtUri(uri.empty() ? "qemu:///system" : uri);
  o.plugin = PluginPath("nbdkit-vmbackup-plugin.so");
  if (const char* root = std::getenv("VMBACKUP_INSTANT_DIR")) o.state_root = root;
  return o;
}

Status InstantRestore(const RepoOpts& repo, const std::string& vm, const std::string& name,
                      const std::string& source, const std::string& disk_dir) {
  if (name.empty()) return InvalidArgumentError("--instant needs --to-vm --name NEW_VM");
  if (!IsLibvirtUri(source)) {
    return NotSupportedError(
        "instant recovery runs under libvirt (--source qemu:///system or libvirt:///system); "
        "the embedded host and vSphere have no VM that reads its disk from an NBD export");
  }
  VMBACKUP_ASSIGN_OR_RETURN(OpenedRepo r, OpenRepoWithKey(repo));
  VMBACKUP_ASSIGN_OR_RETURN(std::string id, ResolvePoint(*r.repo, repo.point, vm));
  VMBACKUP_ASSIGN_OR_RETURN(repo::Point point, repo::LoadPoint(*r.repo, id));
  r.repo.reset();
  instant::Options o = InstantOptions(source);
  o.repo_location = RepoLocation(repo);
  o.s3_ca_file = repo.s3_ca_file;
  o.key = r.key;
  o.overlay_dir = disk_dir;
  VMBACKUP_ASSIGN_OR_RETURN(instant::StartReport rep, instant::Start(point, name, o));
  if (Flags().json) {
    std::printf("%s\n", nlohmann::json{{"name", rep.name},
                                       {"uuid", rep.uuid},
                                       {"point", id},
                                       {"seconds_to_running", rep.seconds_to_running},
                                       {"overlays", rep.overlays}}
                            .dump(2)
                            .c_str());
  } else {
    std::printf("domain %s runs from point %s (%.2f s from the command to a running domain)\n",
                rep.name.c_str(), id.c_str(), rep.seconds_to_running);
    for (const auto& ov : rep.overlays) std::printf("  writes go to %s\n", ov.c_str());
    std::printf(
        "move it to real storage: vmbackup instant migrate %s; throw it away: vmbackup "
        "instant stop %s\n",
        rep.name.c_str(), rep.name.c_str());
  }
  return Status::Ok();
}

void AddInstantCommands(CLI::App& app, int* exit_code) {
  CLI::App* inst = app.add_subcommand(
      "instant",
      "VMs running straight from restore points (restore --instant): list, migrate, "
      "stop");
  inst->require_subcommand(1);
  struct Opts {
    std::string name, source, disk_dir;
    uint64_t bandwidth = 0;
  };
  auto o = std::make_shared<Opts>();
  auto source = [o](CLI::App* c) {
    c->add_option("--source", o->source, "the libvirt URI (default qemu:///system)");
  };
  CLI::App* c = inst->add_subcommand("list", "the instances, their domains and exports");
  source(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto list, instant::List(InstantOptions(o->source)));
    if (Flags().json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& i : list) {
        j.push_back({{"name", i.name},
                     {"point", i.point},
                     {"state", i.state},
                     {"exports", i.exports},
                     {"exports_running", i.exports_running},
                     {"overlays", i.overlays}});
      }
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    for (const auto& i : list) {
      std::printf("%-20s %-10s point %s, exports %d/%d running%s\n", i.name.c_str(),
                  i.state.c_str(), i.point.c_str(), i.exports_running, i.exports,
                  i.exports_running < i.exports ? " (vmbackup instant reconnect)" : "");
    }
    return Status::Ok();
  });
  c = inst->add_subcommand("reconnect", "start again the exports of an instance that stopped");
  c->add_option("NAME", o->name)->required();
  source(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(int n, instant::Reconnect(o->name, InstantOptions(o->source)));
    if (!Flags().json) std::printf("%d exports started again\n", n);
    return Status::Ok();
  });
  c = inst->add_subcommand("migrate",
                           "copy an instance's disks to real storage while it runs, pivot, and "
                           "stop its exports: it no longer needs the repository");
  c->add_option("NAME", o->name)->required();
  c->add_option("--bandwidth", o->bandwidth, "MiB/s per disk (default: unlimited)");
  c->add_option("--disk-dir", o->disk_dir, "where the copies go (default: libvirt's pool)");
  source(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_RETURN_IF_ERROR(
        instant::Migrate(o->name, InstantOptions(o->source), o->bandwidth, o->disk_dir));
    if (!Flags().json) std::printf("%s runs on its own disks now\n", o->name.c_str());
    return Status::Ok();
  });
  c = inst->add_subcommand("stop", "throw an instance away: its domain, exports and overlays");
  c->add_option("NAME", o->name)->required();
  source(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_RETURN_IF_ERROR(instant::Stop(o->name, InstantOptions(o->source)));
    if (!Flags().json) std::printf("%s stopped and removed\n", o->name.c_str());
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
