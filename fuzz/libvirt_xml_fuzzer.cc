// Fuzzes the libvirt driver's reading of domain XML, which comes from libvirt and, for a
// restore to a new domain, from a restore point (outside input): parsing, choosing the disks
// to back up, and making the definition of a new domain. Nothing may crash; a new definition
// made from any input must parse again with the new name and disk files.
#include <cstdlib>
#include <string>
#include <string_view>

#include "hv/libvirt/libvirt_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup::hv::libvirt;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
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
  (void)JobSocket(text);
  return 0;
}
