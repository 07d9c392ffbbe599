// The libvirt XML the driver reads and writes: domain definitions (the disks a backup reads,
// and a saved definition made into a new domain), and the documents of a pull-mode backup job
// and its checkpoint (https://libvirt.org/formatbackup.html, formatcheckpoint.html).
//
// Domain XML comes from libvirt and, for restores, from a restore point: both are parsed as
// outside input (bounded, no entities; fuzz/libvirt_xml_fuzzer.cc).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmbackup::hv::libvirt {

struct DomainDisk {
  std::string target;        // "vda"
  std::string device;        // "disk", "cdrom", "floppy", "lun"
  std::string type;          // "file", "block", "network", "volume"
  std::string source;        // the file or block device ("" for network disks and empty drives)
  std::string format;        // the driver type: "qcow2", "raw", ...
  bool has_backing = false;  // a backing chain below the top image
};

struct DomainDesc {
  std::string name, uuid;
  std::string qemu_user;           // the DAC label's "+UID:+GID" (where QEMU runs as another user)
  std::vector<DomainDisk> disks;   // in document order
  bool has_agent_channel = false;  // a virtio channel org.qemu.guest_agent.0
};

// kCorruption for XML that is not a domain.
Result<DomainDesc> ParseDomainXml(std::string_view xml);

// The disks a backup reads: device "disk" with a file or block source, in document order.
// Their place in this list gives the device key (2000 + index).
std::vector<DomainDisk> BackupDisks(const DomainDesc& d);
inline constexpr int kFirstDeviceKey = 2000;

// A domain name that can also name files: letters, digits, '-', '_', '.', not starting with '.'.
bool SafeDomainName(std::string_view name);

struct NewDisk {
  std::string path, format;  // a file, "qcow2" or "raw"
  // Instant recovery: `path` is a qcow2 overlay whose backing is the NBD export on this unix
  // socket (raw, read-only). An I/O error pauses the domain instead of failing the guest's
  // request (error_policy and rerror_policy "stop"): while the export restarts the guest
  // waits, and resuming it retries the request (QEMU reconnects on demand). libvirt 9 has no
  // reconnect delay for a backing store.
  std::string nbd_backing;
};
// A saved definition made into a new domain: `name`, no uuid (libvirt picks one), no MAC
// addresses (libvirt picks new ones, so the copy can run beside the original), the backup
// disks in order pointing at `disks` with no backing chain, and no <metadata> of ours.
// kInvalidArgument when the count of disks differs.
Result<std::string> NewDomainXml(std::string_view config, std::string_view name,
                                 const std::vector<NewDisk>& disks);

// A restore test's sandbox (test-restore): `domain_xml` with no way out of the host's QEMU
// process: no network interfaces, no host devices passed through, no shared host folders, no
// USB redirection. Its first serial port keeps its type and logs to `console_log` (written by
// libvirt's virtlogd), so that the boot can be watched; the other serial ports and consoles go.
Result<std::string> SandboxDomainXml(std::string_view domain_xml, const std::string& console_log);

// Where a pull-mode backup job serves its disks: a unix socket, or TCP (with TLS: the nbdssl
// transport).
struct JobServer {
  std::string socket;  // "" = TCP at host:port
  std::string host;
  int port = 0;
  bool tls = false;
  // "unix:PATH" or "tcp:HOST:PORT": how a job is told apart from another tool's.
  std::string Endpoint() const;
  // The TCP server (with TLS) an Endpoint() "tcp:HOST:PORT" names; nullopt for anything else.
  static std::optional<JobServer> FromTcpEndpoint(std::string_view endpoint);
};
// One entry per backup disk of a job.
struct JobDisk {
  std::string target;
  std::string incremental_from;  // a checkpoint name; "" = a full view
  std::string scratch;           // the copy-before-write file (libvirt 9.0 chooses none itself)
};
std::string BackupJobXml(const JobServer& server, const std::vector<JobDisk>& disks);
// A checkpoint with a bitmap on the `bitmap_targets` and none on the other `all_targets`.
std::string CheckpointXml(const std::string& name, const std::vector<std::string>& all_targets,
                          const std::vector<std::string>& bitmap_targets);
// Where a running job serves (JobServer::Endpoint of its <server>), "" when there is none.
std::string JobEndpoint(std::string_view job_xml);

// The host a libvirt URI names (qemu+ssh://root@kvm1:2222/system -> kvm1); "" for a local
// one: no host, or localhost, 127.0.0.1, [::1].
std::string RemoteHost(std::string_view uri);

}  // namespace vmbackup::hv::libvirt
