// Fuzzes the embedded host's parsers of VM metadata, which users and other products write:
// the .vmx/.vmsd syntax (ConfigFile), the .vmx disk list, the snapshot tree, change ids.
// Nothing may crash; whatever parses survives a write and re-parse with the same meaning.
#include <cstdlib>
#include <string_view>

#include "host/change_tracking.h"
#include "host/config_file.h"
#include "host/vmsd.h"
#include "host/vmx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup::host;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto cf = ConfigFile::Parse(text)) {
    auto again = ConfigFile::Parse(cf->Serialize());
    if (!again || again->entries() != cf->entries()) std::abort();
  }
  if (auto vmx = Vmx::Parse(text)) {
    (void)vmx->Disks();
    (void)vmx->cbt_granularity();
    (void)vmx->cbt_max_areas();
  }
  if (auto db = SnapshotDb::Parse(text)) {
    auto again = SnapshotDb::Parse(db->Serialize());
    if (!again || again->snapshots.size() != db->snapshots.size()) std::abort();
  }
  (void)ChangeId::Parse(text.substr(0, 200));
  return 0;
}
