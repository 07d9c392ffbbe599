#include "hv/changed_areas.h"

#include "base/strings.h"

namespace vmbackup::hv {

Result<ExtentSet> CollectChangedAreas(Hypervisor& hv, const VmInfo& vm, const SnapshotRef* snapshot,
                                      int device_key, uint64_t capacity, std::string_view change_id,
                                      int* calls) {
  ExtentSet out;
  uint64_t offset = 0;
  int n = 0;
  while (offset < capacity) {
    VMBACKUP_ASSIGN_OR_RETURN(
        ChangedAreas page, hv.QueryChangedDiskAreas(vm, snapshot, device_key, offset, change_id));
    ++n;
    const uint64_t end = page.start_offset + page.length;
    if (page.start_offset != offset || page.length == 0 || end < offset) {
      return ProtocolError(StrFormat(
          "disk %d: the host answered changed areas from %llu (+%llu) when asked from %llu",
          device_key, (unsigned long long)page.start_offset, (unsigned long long)page.length,
          (unsigned long long)offset));
    }
    for (const Extent& e : page.areas) {
      if (e.length == 0) continue;
      if (e.offset < page.start_offset || e.end() > end || e.end() > capacity ||
          e.end() < e.offset) {
        return ProtocolError(StrFormat(
            "disk %d: the host reported a changed area %llu+%llu outside its answer %llu+%llu",
            device_key, (unsigned long long)e.offset, (unsigned long long)e.length,
            (unsigned long long)page.start_offset, (unsigned long long)page.length));
      }
      out.Add(e);
    }
    offset = end;
  }
  if (calls) *calls = n;
  return out;
}

DiskPlan PlanIncremental(const ExtentSet& changed, const ExtentSet& allocated, uint64_t chunk,
                         uint64_t capacity) {
  DiskPlan plan;
  // Every chunk holding a changed byte is rebuilt. One that also holds an allocated byte is
  // read whole (reading gives its current content, zeros included); one with no allocated
  // byte left is recorded as zeros without a read.
  const ExtentSet affected = changed.AlignOutward(chunk, capacity);
  plan.read = affected.Intersect(allocated).AlignOutward(chunk, capacity);
  plan.zeros = affected;
  plan.zeros.Subtract(plan.read);
  return plan;
}

DiskPlan PlanFull(const ExtentSet& allocated, uint64_t chunk, uint64_t capacity) {
  DiskPlan plan;
  plan.read = allocated.AlignOutward(chunk, capacity);
  return plan;
}

}  // namespace vmbackup::hv
