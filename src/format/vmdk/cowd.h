// ESXi vmfsSparse ("COWD", redo log) delta extents (FORMATS.md section 1.5): read-only.
#pragma once

#include "format/vmdk/sparse_extent.h"

namespace vmbackup::vmdk {

// Reads and validates the 2048-byte COWD header into a SparseLayout (4096-entry grain tables,
// no zeroed-grain entries, never written).
Result<SparseLayout> ReadCowdLayout(io::BlockReader& file);

}  // namespace vmbackup::vmdk
