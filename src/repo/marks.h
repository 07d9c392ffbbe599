// Notes a repository keeps about VMs and points, as objects (docs/repository-format.md
// section 7a), so that they survive the loss of any cache:
//   - "the next backup of this VM must be a full" (a failed CBT audit, an in-place restore that
//     wrote to the disks behind change tracking's back), per disk or for every disk;
//   - tombstones of removed point records: a point that is gone without one was lost, not
//     pruned, and check and gc say so until the user acknowledges it with `forget`.
// Names and contents reveal nothing without the key in an encrypted repository.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "repo/repository.h"

namespace vmbackup::repo {

// Why a VM's next backup must read whole disks.
enum class FullReason { kCbtAudit, kInPlaceRestore };

struct FullNeeded {
  std::string reason;      // for the report ("an in-place restore of point X wrote the disk")
  std::vector<int> disks;  // device keys; empty: every disk
};

// Records (or replaces) the mark of `vm` for `why`.
Status MarkFullNeeded(Repository& repo, const std::string& vm, FullReason why,
                      const FullNeeded& mark);
// Every mark of `vm` (none: empty).
Result<std::vector<FullNeeded>> FullNeededMarks(Repository& repo, const std::string& vm);
// Removes the marks of `vm` (a backup that read what they asked for succeeded).
Status ClearFullNeeded(Repository& repo, const std::string& vm);

// Removes the record of point `id` (and its protection marker), leaving a tombstone that says
// `why` ("prune", "forget"). The record may be damaged or already gone (then only the tombstone
// is written: the loss is acknowledged).
Status ForgetPoint(Repository& repo, const std::string& id, const std::string& why);
// The ids of every tombstone.
Result<std::set<std::string>> ForgottenPoints(Repository& repo);

}  // namespace vmbackup::repo
