// Fuzzes the libvirt driver's reading of domain XML, which comes from libvirt and, for a
// restore to a new domain, from a restore point (outside input): parsing, choosing the disks
// to back up, and making the definition of a new domain and of a restore test's sandbox. Nothing
// may crash; a new definition made from any input must parse again with the new name and disk
// files, and its sandbox must have no network interface. Backup jobs' descriptions and libvirt
// URIs go through the same input.
#include <cstdlib>
#include <string>
#include <string_view>

#include "hv/libvirt/libvirt_xml.h"
#include "xml/xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup::hv::libvirt;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // A running job's description (libvirt's answer) and a libvirt URI (the user's).
  const std::string endpoint = JobEndpoint(text);
  if (!endpoint.empty() && endpoint.rfind("unix:", 0) != 0 && endpoint.rfind("tcp:", 0) != 0)
    std::abort();
  (void)RemoteHost(text);
  auto d = ParseDomainXml(text);
  if (!d) return 0;
  std::vector<NewDisk> disks;
  for (size_t i = 0; i < BackupDisks(*d).size(); ++i)
    disks.push_back({"/restore/new-" + std::to_string(i) + ".qcow2", "qcow2", ""});
  auto x = NewDomainXml(text, "new-domain", disks);
  if (!x) return 0;
  auto back = ParseDomainXml(*x);
  if (!back || back->name != "new-domain" || BackupDisks(*back).size() != disks.size())
    std::abort();
  for (size_t i = 0; i < disks.size(); ++i)
    if (BackupDisks(*back)[i].source != disks[i].path) std::abort();
  auto sandbox = SandboxDomainXml(*x, "/run/test/console.log");
  if (!sandbox) std::abort();  // the new definition parsed: its sandbox must be made
  auto sd = ParseDomainXml(*sandbox);
  auto sdoc = vmbackup::xml::Document::Parse(*sandbox, "sandbox");
  if (!sd || sd->name != "new-domain" || !sdoc || sdoc->root().child("devices").child("interface"))
    std::abort();
  return 0;
}
