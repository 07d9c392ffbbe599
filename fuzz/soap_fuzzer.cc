// Fuzzes what the vSphere driver reads from a server it does not control: SOAP answers and
// faults (libxml2 under our reader), property contents, a VM's virtual disks, changed-area
// answers; and the source URI, datastore paths and the datastore map users type.
// Nothing may crash or hang; what parses is used the way the driver uses it.
#include <string>
#include <string_view>

#include "hv/vsphere/vim_client.h"
#include "hv/vsphere/vsphere_driver.h"
#include "hv/vsphere/vsphere_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup::hv::vsphere;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string fault;
  for (long status : {200L, 500L}) {
    auto doc = ParseSoapAnswer(status, text, "fuzz", &fault);
    if (!doc) continue;
    vmbackup::xml::Node rv = VimClient::ReturnVal(**doc);
    std::vector<ObjectContent> objects;
    ReadObjectContents(rv, &objects);
    for (const auto& o : objects) {
      for (const auto& [name, val] : o.props) {
        (void)ParseVirtualDisks(val, true);
        (void)val.xsi_type();
        (void)val.path("snapshot/rootSnapshotList/childSnapshotList").text();
      }
    }
    (void)ParseChangedAreas(rv);
    (void)MoRef::From(rv).Describe();
  }
  const std::string line(text.substr(0, 512));
  (void)ParseSourceUri(line);
  (void)ParseDatastorePath(line);
  (void)ParseDatastoreMap(line);
  return 0;
}
