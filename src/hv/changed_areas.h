// The shared helpers of change tracking: paging QueryChangedDiskAreas until the disk is
// covered, and the plan of a disk's backup (what to read, what to record as zeros).
#pragma once

#include <string_view>

#include "hv/hypervisor.h"

namespace vmbackup::hv {

// Every area changed since `change_id` ("*": every allocated area), asking page after page
// from offset 0 until the answers cover `capacity`. kProtocol when the host answers a page
// that does not start where it was asked or does not move forward (so a broken host cannot
// make us loop), or areas outside the page it claims to cover. `calls` counts the questions.
Result<ExtentSet> CollectChangedAreas(Hypervisor& hv, const VmInfo& vm, const SnapshotRef* snapshot,
                                      int device_key, uint64_t capacity, std::string_view change_id,
                                      int* calls = nullptr);

// What a backup of one disk does, on the repository's chunk grid:
struct DiskPlan {
  ExtentSet read;   // chunks with a changed byte and an allocated one: read and stored
  ExtentSet zeros;  // chunks with a changed byte and nothing allocated: zeros, never read
};

// An incremental: `changed` since the last point and `allocated` now.
DiskPlan PlanIncremental(const ExtentSet& changed, const ExtentSet& allocated, uint64_t chunk,
                         uint64_t capacity);
// A full: every allocated area is read, nothing else.
DiskPlan PlanFull(const ExtentSet& allocated, uint64_t chunk, uint64_t capacity);

}  // namespace vmbackup::hv
