// Reading the header of a hosted sparse ("KDMV") extent, plain or streamOptimized, into a
// SparseLayout, with every field checked (FORMATS.md sections 1.3 and 1.4).
#pragma once

#include "format/vmdk/sparse_extent.h"
#include "format/vmdk/sparse_header.h"

namespace vmbackup::vmdk {

// Reads and validates the header; for streams with gdOffset = GD_AT_END, the footer at the
// end of the file supplies the real grain directory. `header` receives the header as found
// at sector 0 (it locates the embedded descriptor).
Result<SparseLayout> ReadHostedSparseLayout(io::BlockReader& file, SparseHeader* header);

}  // namespace vmbackup::vmdk
