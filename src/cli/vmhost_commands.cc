#include "cli/vmhost_commands.h"

#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "cli/vmhost_serve.h"
#include "host/datastore.h"
#include "host/transports.h"
#include "io/posix_file.h"

namespace vmbackup::cli {
namespace {

using host::Datastore;
using host::Vm;
using nlohmann::json;

struct Global {
  std::string datastore;
};

Result<Datastore> OpenStore(const Global& g) {
  std::string root = g.datastore;
  if (root.empty()) {
    const char* env = std::getenv("VMHOST_DATASTORE");
    if (env) root = env;
  }
  if (root.empty())
    return InvalidArgumentError("no datastore: give --datastore DIR or set VMHOST_DATASTORE");
  return Datastore::Open(root);
}

Result<std::unique_ptr<Vm>> OpenVm(const Global& g, const std::string& name) {
  VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(g));
  return ds.OpenVm(name);
}

Result<host::SnapshotSel> SelectSnapshot(const Vm& vm, const std::string& s) {
  if (s.empty()) return host::SnapshotSel{};
  VMBACKUP_ASSIGN_OR_RETURN(const host::Snapshot* snap, vm.snapshots().Lookup(s));
  return host::SnapshotSel{snap->uid};
}

Result<size_t> DiskIndex(const std::string& s) {
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t n, ParseUint(s));
  return size_t(n);
}

// A unix socket left behind by an export that ended (nbdkit does not remove it) is removed;
// one that something still listens on is an error.
Status ClearStaleSocket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();
  if (!S_ISSOCK(st.st_mode)) return AlreadyExistsError(path + " exists and is not a socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return InvalidArgumentError("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError("socket", errno);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(fd);
  if (rc == 0) return AlreadyExistsError(path + ": another server is listening there");
  if (err == ECONNREFUSED && ::unlink(path.c_str()) != 0)
    return PosixError("remove " + path, errno);
  return Status::Ok();
}

// Why a transport cannot be used here, or "" when it can.
std::string TransportUnavailable(const std::string& mode) {
  auto m = host::ParseTransport(mode);
  if (!m) return m.error().message();
  Status s = host::CheckTransport(*m, PluginPath());
  return s.ok() ? "" : s.message();
}

json SnapshotJson(const host::Snapshot& s) {
  json disks = json::array();
  for (const auto& d : s.disks) disks.push_back({{"node", d.node}, {"file", d.file_name}});
  json j{{"uid", s.uid},
         {"name", s.name},
         {"create_time_us", s.create_time_us},
         {"consistency", host::ConsistencyName(s.consistency)},
         {"quiesce_requested", s.quiesce_requested},
         {"disks", disks}};
  j["parent"] = s.parent ? json(*s.parent) : json(nullptr);
  if (!s.description.empty()) j["description"] = s.description;
  return j;
}

void PrintTree(const host::SnapshotDb& db, std::optional<uint32_t> parent, int depth) {
  for (const host::Snapshot& s : db.snapshots) {
    if (s.parent != parent) continue;
    std::printf("%*s%u  %s  [%s]%s\n", depth * 2, "", s.uid, s.name.c_str(),
                std::string(host::ConsistencyName(s.consistency)).c_str(),
                db.current == s.uid ? "  <- you are here" : "");
    PrintTree(db, s.uid, depth + 1);
  }
}

}  // namespace

void AddVmhostCommands(CLI::App& app, int* exit_code) {
  auto g = std::make_shared<Global>();
  app.add_option("--datastore", g->datastore, "datastore folder (or VMHOST_DATASTORE)");

  CLI::App* init = app.add_subcommand("init", "create the datastore folder");
  Bind(init, exit_code, [g]() -> Status {
    std::string root = g->datastore.empty() && std::getenv("VMHOST_DATASTORE")
                           ? std::getenv("VMHOST_DATASTORE")
                           : g->datastore;
    if (root.empty())
      return InvalidArgumentError("no datastore: give --datastore DIR or set VMHOST_DATASTORE");
    return Datastore::Init(root);
  });

  // ---- vm ----
  CLI::App* vm = app.add_subcommand("vm", "create, list, inspect, power and delete VMs");
  vm->require_subcommand(1);
  struct VmOpts {
    std::string name;
    std::vector<std::string> disks;
    bool cbt = false, hard = false;
  };
  auto vo = std::make_shared<VmOpts>();

  CLI::App* c = vm->add_subcommand("create", "create a VM with thin disks");
  c->add_option("NAME", vo->name)->required();
  c->add_option("--disk", vo->disks, "disk size (repeat for more disks)")->required();
  c->add_flag("--cbt", vo->cbt, "enable Changed Block Tracking");
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(*g));
    host::NewVmOptions o;
    o.cbt = vo->cbt;
    for (const auto& d : vo->disks) {
      VMBACKUP_ASSIGN_OR_RETURN(uint64_t size, ParseSize(d));
      o.disk_sizes.push_back(size);
    }
    return ds.CreateVm(vo->name, o).status();
  });

  c = vm->add_subcommand("list", "list VMs");
  Bind(c, exit_code, [g]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(*g));
    VMBACKUP_ASSIGN_OR_RETURN(auto names, ds.ListVms());
    json j = json::array();
    for (const auto& n : names) {
      auto v = ds.OpenVm(n);
      json e{{"name", n}};
      if (v) {
        e["power"] = (*v)->vmx().powered_on() ? "on" : "off";
        e["snapshots"] = (*v)->snapshots().snapshots.size();
        e["cbt"] = (*v)->vmx().cbt_enabled();
      } else {
        e["error"] = v.error().message();
      }
      j.push_back(e);
    }
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      for (const auto& e : j) {
        if (e.contains("error")) {
          std::printf("%-24s error: %s\n", e["name"].get<std::string>().c_str(),
                      e["error"].get<std::string>().c_str());
        } else {
          std::printf("%-24s %-3s  %zu snapshots  CBT %s\n", e["name"].get<std::string>().c_str(),
                      e["power"].get<std::string>().c_str(), e["snapshots"].get<size_t>(),
                      e["cbt"].get<bool>() ? "on" : "off");
        }
      }
    }
    return Status::Ok();
  });

  c = vm->add_subcommand("info", "configuration, disks, chains, snapshots and problems");
  c->add_option("NAME", vo->name)->required();
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, vo->name));
    json j{{"name", v->name()},
           {"uuid", v->vmx().uuid()},
           {"power", v->vmx().powered_on() ? "on" : "off"},
           {"cbt", v->vmx().cbt_enabled()}};
    if (!v->vmx().power_on_block().empty()) j["power_on_block"] = v->vmx().power_on_block();
    std::vector<std::string> problems = v->Diagnose();
    json disks = json::array();
    auto d = v->Disks();
    if (d) {
      for (const auto& di : *d) {
        json e{{"index", di.index}, {"node", di.node},         {"device_key", di.device_key},
               {"file", di.leaf},   {"capacity", di.capacity}, {"chain", di.chain}};
        if (!di.change_id.empty()) e["change_id"] = di.change_id;
        disks.push_back(e);
      }
    }
    j["disks"] = disks;
    json snaps = json::array();
    for (const auto& s : v->snapshots().snapshots) snaps.push_back(SnapshotJson(s));
    j["snapshots"] = snaps;
    j["current_snapshot"] = v->snapshots().current ? json(*v->snapshots().current) : json(nullptr);
    j["problems"] = problems;
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("VM %s (%s), power %s, CBT %s\n", v->name().c_str(), v->vmx().uuid().c_str(),
                v->vmx().powered_on() ? "on" : "off", v->vmx().cbt_enabled() ? "on" : "off");
    if (!v->vmx().power_on_block().empty())
      std::printf("MAY NOT BE POWERED ON: %s\n", v->vmx().power_on_block().c_str());
    for (const auto& e : disks) {
      std::printf("disk %zu %s (key %d): %s, %s\n", e["index"].get<size_t>(),
                  e["node"].get<std::string>().c_str(), e["device_key"].get<int>(),
                  e["file"].get<std::string>().c_str(),
                  HumanBytes(e["capacity"].get<uint64_t>()).c_str());
      std::string chain;
      for (const auto& l : e["chain"])
        chain += (chain.empty() ? "" : " -> ") + l.get<std::string>();
      std::printf("  chain: %s\n", chain.c_str());
      if (e.contains("change_id"))
        std::printf("  change id: %s\n", e["change_id"].get<std::string>().c_str());
    }
    if (!v->snapshots().snapshots.empty()) {
      std::printf("snapshots:\n");
      PrintTree(v->snapshots(), std::nullopt, 1);
    }
    for (const auto& p : problems) std::printf("PROBLEM: %s\n", p.c_str());
    return Status::Ok();
  });

  c = vm->add_subcommand("delete", "delete a powered-off VM and its files");
  c->add_option("NAME", vo->name)->required();
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(*g));
    return ds.DeleteVm(vo->name);
  });

  c = vm->add_subcommand("power-on", "power a VM on");
  c->add_option("NAME", vo->name)->required();
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, vo->name));
    return v->PowerOn();
  });
  c = vm->add_subcommand("unblock", "allow a VM to be powered on that a tool blocked (say why)");
  c->add_option("NAME", vo->name)->required();
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, vo->name));
    return v->SetPowerOnBlock("");
  });
  c = vm->add_subcommand("power-off", "power a VM off (--hard: a power loss, which resets CBT)");
  c->add_option("NAME", vo->name)->required();
  c->add_flag("--hard", vo->hard, "pull the plug: change tracking is invalidated");
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, vo->name));
    return v->PowerOff(vo->hard);
  });
  c = vm->add_subcommand("consolidate", "merge or remove deltas no snapshot references");
  c->add_option("NAME", vo->name)->required();
  Bind(c, exit_code, [g, vo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, vo->name));
    return v->Consolidate();
  });

  // ---- disk ----
  CLI::App* disk = app.add_subcommand("disk", "guest I/O on a VM's disks");
  disk->require_subcommand(1);
  struct DiskOpts {
    std::string vm, disk, snapshot, offset = "0", length, from, pattern;
  };
  auto dopt = std::make_shared<DiskOpts>();
  c = disk->add_subcommand("write", "write as the guest (VM powered on)");
  c->add_option("VM", dopt->vm)->required();
  c->add_option("DISK", dopt->disk, "disk index (0, 1, ...)")->required();
  c->add_option("--offset", dopt->offset, "first byte");
  c->add_option("--length", dopt->length, "bytes to write");
  c->add_option("--pattern", dopt->pattern, "byte to repeat");
  c->add_option("--from", dopt->from, "file whose bytes to write");
  Bind(c, exit_code, [g, dopt]() -> Status {
    if (dopt->from.empty() == dopt->pattern.empty()) {
      return InvalidArgumentError("give exactly one of --from FILE and --pattern BYTE");
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, dopt->vm));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(dopt->disk));
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(dopt->offset));
    std::vector<uint8_t> data;
    if (!dopt->from.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(std::string bytes, io::ReadSmallFile(dopt->from, 1ull << 30));
      data.assign(bytes.begin(), bytes.end());
      if (!dopt->length.empty()) {
        VMBACKUP_ASSIGN_OR_RETURN(uint64_t len, ParseSize(dopt->length));
        if (len > data.size()) return InvalidArgumentError("--length is longer than --from");
        data.resize(len);
      }
    } else {
      VMBACKUP_ASSIGN_OR_RETURN(uint64_t b, ParseUint(dopt->pattern));
      if (b > 255) return InvalidArgumentError("--pattern must be a byte (0 to 255)");
      if (dopt->length.empty()) return InvalidArgumentError("--pattern needs --length");
      VMBACKUP_ASSIGN_OR_RETURN(uint64_t len, ParseSize(dopt->length));
      if (len > (1ull << 30)) return InvalidArgumentError("write at most 1 GiB at a time");
      data.assign(len, uint8_t(b));
    }
    return v->Write(index, offset, data);
  });
  c = disk->add_subcommand("read", "read the current state or a snapshot to stdout");
  c->add_option("VM", dopt->vm)->required();
  c->add_option("DISK", dopt->disk)->required();
  c->add_option("--snapshot", dopt->snapshot, "snapshot name or uid");
  c->add_option("--offset", dopt->offset, "first byte");
  c->add_option("--length", dopt->length, "bytes (default: to the end)");
  Bind(c, exit_code, [g, dopt]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, dopt->vm));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(dopt->disk));
    VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel snap, SelectSnapshot(*v, dopt->snapshot));
    VMBACKUP_ASSIGN_OR_RETURN(auto d, v->OpenDisk(index, snap, false));
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(dopt->offset));
    uint64_t length = d->size() - std::min(offset, d->size());
    if (!dopt->length.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(length, ParseSize(dopt->length));
    }
    StreamSink out(STDOUT_FILENO);
    return CopyDiskRange(*d, offset, length, out);
  });

  c = disk->add_subcommand("resize", "grow a disk (no snapshots; invalidates change ids)");
  c->add_option("VM", dopt->vm)->required();
  c->add_option("DISK", dopt->disk)->required();
  c->add_option("--size", dopt->length, "new capacity")->required();
  Bind(c, exit_code, [g, dopt]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, dopt->vm));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(dopt->disk));
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t size, ParseSize(dopt->length));
    return v->ResizeDisk(index, size);
  });

  c = disk->add_subcommand("transports", "which transport modes can open disks here, and why not");
  Bind(c, exit_code, [g]() -> Status {
    json j = json::array();
    for (const char* m : {"file", "hotadd", "nbdssl", "nbd"}) {
      std::string why = TransportUnavailable(m);
      json e{{"mode", m}, {"available", why.empty()}};
      if (!why.empty()) e["reason"] = why;
      j.push_back(e);
    }
    if (Flags().json) {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      for (const auto& e : j) {
        std::printf("%-7s %s\n", e["mode"].get<std::string>().c_str(),
                    e["available"].get<bool>()
                        ? "available"
                        : ("unavailable: " + e["reason"].get<std::string>()).c_str());
      }
    }
    return Status::Ok();
  });

  struct ExportOpts {
    std::string vm, disk, snapshot, nbd, tls, run;
    bool writable = false, restore = false;
  };
  auto eo = std::make_shared<ExportOpts>();
  c = disk->add_subcommand("export", "serve a disk over NBD (the nbd / nbdssl transports)");
  c->add_option("VM", eo->vm)->required();
  c->add_option("DISK", eo->disk, "disk index")->required();
  c->add_option("--snapshot", eo->snapshot, "serve this snapshot (read-only unless --restore)");
  c->add_option("--nbd", eo->nbd, "a unix socket path, or HOST:PORT on 127.0.0.1")->required();
  c->add_option("--tls", eo->tls,
                "folder with ca-cert.pem, server-cert.pem, server-key.pem: require TLS");
  c->add_flag("--writable", eo->writable, "the current state, writable as the guest (CBT records)");
  c->add_flag("--restore", eo->restore,
              "with --snapshot: the snapshot's disk, writable for a restore");
  c->add_option("--run", eo->run,
                "run this command with $uri set, then stop serving (nbdkit --run)");
  Bind(c, exit_code, [g, eo]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(*g));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(eo->disk));
    if (eo->writable && !eo->snapshot.empty()) {
      return InvalidArgumentError(
          "--writable serves the current state; a snapshot is writable only with --restore");
    }
    if (eo->restore && eo->snapshot.empty())
      return InvalidArgumentError("--restore needs --snapshot");
    std::string mode = eo->restore ? "restore" : eo->writable ? "write" : "read";
    std::string uid;
    {
      VMBACKUP_ASSIGN_OR_RETURN(auto v, ds.OpenVm(eo->vm));
      VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel snap, SelectSnapshot(*v, eo->snapshot));
      if (snap) uid = std::to_string(*snap);
      VMBACKUP_RETURN_IF_ERROR(v->OpenDisk(index, snap, false).status());
      if (mode == "write" && !v->vmx().powered_on()) {
        return InvalidArgumentError("VM " + eo->vm + " is powered off: the guest cannot write");
      }
    }
    std::string why = TransportUnavailable(eo->tls.empty() ? "nbd" : "nbdssl");
    if (!why.empty()) return UnavailableError(why);
    std::vector<std::string> args = {"nbdkit"};
    if (eo->run.empty()) args.push_back("--foreground");
    if (eo->nbd.find('/') != std::string::npos || eo->nbd.find(':') == std::string::npos) {
      VMBACKUP_RETURN_IF_ERROR(ClearStaleSocket(eo->nbd));
      args.insert(args.end(), {"-U", eo->nbd});
    } else {
      size_t colon = eo->nbd.rfind(':');
      std::string host = eo->nbd.substr(0, colon), port = eo->nbd.substr(colon + 1);
      if (host != "127.0.0.1" && host != "localhost") {
        return InvalidArgumentError("vmhost serves NBD on 127.0.0.1 only, not " + host);
      }
      args.insert(args.end(), {"-i", "127.0.0.1", "-p", port});
    }
    if (!eo->tls.empty()) {
      for (const char* f : {"ca-cert.pem", "server-cert.pem", "server-key.pem"}) {
        if (!io::PathExists(io::JoinPath(eo->tls, f))) {
          return InvalidArgumentError("--tls " + eo->tls + ": " + f + " is missing");
        }
      }
      args.insert(args.end(), {"--tls=require", "--tls-certificates=" + eo->tls});
    }
    if (mode == "read") args.push_back("-r");
    if (!eo->run.empty()) args.insert(args.end(), {"--run", eo->run});
    args.push_back(PluginPath());
    args.push_back("datastore=" + ds.root());
    args.push_back("vm=" + eo->vm);
    args.push_back("disk=" + std::to_string(index));
    if (!uid.empty()) args.push_back("snapshot=" + uid);
    args.push_back("mode=" + mode);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    ::execvp("nbdkit", argv.data());
    return PosixError("run nbdkit", errno);
  });

  AddServeCommand(
      app,
      [g]() -> Result<std::string> {
        VMBACKUP_ASSIGN_OR_RETURN(Datastore ds, OpenStore(*g));
        return ds.root();
      },
      exit_code);

  // ---- snapshot ----
  CLI::App* snapshot_cmd =
      app.add_subcommand("snapshot", "create, list, delete and revert snapshots");
  snapshot_cmd->require_subcommand(1);
  struct SnapOpts {
    std::string vm, name, description;
    bool quiesce = false, allow_crash = false;
  };
  auto so = std::make_shared<SnapOpts>();
  c = snapshot_cmd->add_subcommand("create", "take a snapshot");
  c->add_option("VM", so->vm)->required();
  c->add_option("NAME", so->name)->required();
  c->add_option("--description", so->description);
  c->add_flag("--quiesce", so->quiesce,
              "freeze the guest (its freeze/thaw hooks) around the snapshot");
  c->add_flag("--allow-crash-consistent", so->allow_crash,
              "with --quiesce: fall back to crash consistency when the freeze hook fails");
  Bind(c, exit_code, [g, so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, so->vm));
    host::SnapshotOptions o{so->description, so->quiesce, so->allow_crash};
    VMBACKUP_ASSIGN_OR_RETURN(host::Snapshot s, v->CreateSnapshot(so->name, o));
    if (Flags().json) {
      std::printf("%s\n", SnapshotJson(s).dump(2).c_str());
    } else {
      std::printf("snapshot %u '%s' of %s: %s-consistent\n", s.uid, s.name.c_str(), so->vm.c_str(),
                  std::string(host::ConsistencyName(s.consistency)).c_str());
    }
    return Status::Ok();
  });
  c = snapshot_cmd->add_subcommand("list", "the snapshot tree");
  c->add_option("VM", so->vm)->required();
  Bind(c, exit_code, [g, so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, so->vm));
    if (Flags().json) {
      json j = json::array();
      for (const auto& s : v->snapshots().snapshots) j.push_back(SnapshotJson(s));
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      PrintTree(v->snapshots(), std::nullopt, 0);
    }
    return Status::Ok();
  });
  c = snapshot_cmd->add_subcommand("delete", "delete a snapshot (its data is merged as needed)");
  c->add_option("VM", so->vm)->required();
  c->add_option("SNAPSHOT", so->name, "name or uid")->required();
  Bind(c, exit_code, [g, so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, so->vm));
    VMBACKUP_ASSIGN_OR_RETURN(const host::Snapshot* s, v->snapshots().Lookup(so->name));
    return v->DeleteSnapshot(s->uid);
  });
  c = snapshot_cmd->add_subcommand("delete-all",
                                   "delete every snapshot, merging all layers into the base");
  c->add_option("VM", so->vm)->required();
  Bind(c, exit_code, [g, so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, so->vm));
    return v->DeleteAllSnapshots();
  });
  c = snapshot_cmd->add_subcommand("revert", "go back to a snapshot (later writes are discarded)");
  c->add_option("VM", so->vm)->required();
  c->add_option("SNAPSHOT", so->name, "name or uid")->required();
  Bind(c, exit_code, [g, so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, so->vm));
    VMBACKUP_ASSIGN_OR_RETURN(const host::Snapshot* s, v->snapshots().Lookup(so->name));
    return v->RevertToSnapshot(s->uid);
  });

  // ---- cbt ----
  CLI::App* cbt = app.add_subcommand("cbt", "Changed Block Tracking");
  cbt->require_subcommand(1);
  struct CbtOpts {
    std::string vm, disk = "0", snapshot, change_id, start = "0";
    bool all = false;
  };
  auto co = std::make_shared<CbtOpts>();
  c = cbt->add_subcommand("enable", "enable CBT on a VM");
  c->add_option("VM", co->vm)->required();
  Bind(c, exit_code, [g, co]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, co->vm));
    return v->EnableChangeTracking();
  });
  c = cbt->add_subcommand("change-id", "the change id of a disk at a snapshot (or now)");
  c->add_option("VM", co->vm)->required();
  c->add_option("--disk", co->disk, "disk index");
  c->add_option("--snapshot", co->snapshot, "snapshot name or uid");
  Bind(c, exit_code, [g, co]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, co->vm));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(co->disk));
    VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel snap, SelectSnapshot(*v, co->snapshot));
    VMBACKUP_ASSIGN_OR_RETURN(host::ChangeId id, v->GetChangeId(index, snap));
    if (Flags().json) {
      std::printf("%s\n", json{{"change_id", id.ToString()}}.dump().c_str());
    } else {
      std::printf("%s\n", id.ToString().c_str());
    }
    return Status::Ok();
  });
  c = cbt->add_subcommand("changes", "QueryChangedDiskAreas: one page from --start");
  c->add_option("VM", co->vm)->required();
  c->add_option("--disk", co->disk, "disk index");
  c->add_option("--snapshot", co->snapshot, "snapshot name or uid (default: now, VM powered off)");
  c->add_option("--change-id", co->change_id, "change id, or * for every allocated area")
      ->required();
  c->add_option("--start", co->start, "startOffset");
  c->add_flag("--all", co->all, "page until the whole disk is covered");
  Bind(c, exit_code, [g, co]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, OpenVm(*g, co->vm));
    VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(co->disk));
    VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel snap, SelectSnapshot(*v, co->snapshot));
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t start, ParseSize(co->start));
    json pages = json::array();
    while (true) {
      VMBACKUP_ASSIGN_OR_RETURN(host::ChangedAreas a,
                                v->QueryChangedDiskAreas(index, snap, start, co->change_id));
      json areas = json::array();
      for (const auto& e : a.areas) areas.push_back({{"start", e.offset}, {"length", e.length}});
      pages.push_back(
          {{"start_offset", a.start_offset}, {"length", a.length}, {"changed_area", areas}});
      uint64_t next = a.start_offset + a.length;
      VMBACKUP_ASSIGN_OR_RETURN(auto d, v->OpenDisk(index, snap, false));
      if (!co->all || next >= d->size() || a.length == 0) break;
      start = next;
    }
    if (Flags().json) {
      std::printf("%s\n", (co->all ? pages : pages[0]).dump(2).c_str());
    } else {
      for (const auto& p : pages) {
        std::printf("# startOffset %llu length %llu\n",
                    (unsigned long long)p["start_offset"].get<uint64_t>(),
                    (unsigned long long)p["length"].get<uint64_t>());
        for (const auto& e : p["changed_area"]) {
          std::printf("%llu %llu\n", (unsigned long long)e["start"].get<uint64_t>(),
                      (unsigned long long)e["length"].get<uint64_t>());
        }
      }
    }
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
