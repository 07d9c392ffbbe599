// Copying restore points between repositories (`vmbackup copy`): any two backends, keys and
// encryption settings, the same chunk size. A copied point keeps its id, creation time, VM,
// consistency, statistics and protection; its parent stays when the target holds the parent.
#pragma once

#include <atomic>
#include <string>

#include "repo/point.h"
#include "repo/repository.h"

namespace vmbackup::repo {

struct CopyReport {
  bool copied = false;            // false: the target held the point already
  bool parent_kept = false;       // the target holds the parent: the copy names it
  bool same_ids = false;          // both repositories name chunks alike: no chunk the target has
                                  // is read from the source
  uint64_t chunks_read = 0;       // loaded from the source (decrypted, decompressed, re-hashed)
  uint64_t chunks_new = 0;        // stored in the target (the rest it had already)
  uint64_t bytes_read = 0;        // plaintext bytes of the chunks read
  uint64_t bytes_new = 0;         // plaintext bytes of the chunks stored
  uint64_t chunks_unchanged = 0;  // the same as in the parent: neither read nor written
};

// Copies point `id` of `from` into `to`. Disks whose parent point the target holds start from
// it and take only the chunks that differ in the source (a tree walk that skips shared
// subtrees); others take every chunk. When both repositories name chunks alike (no encryption,
// or the same id key), chunks the target holds are referenced without reading them. A point
// already in the target is left alone (a rerun after an interruption resumes with the next
// point; chunks an interrupted copy stored are found again). kFailedPrecondition when the chunk
// sizes differ. `progress`, when given, counts the plaintext bytes handled.
Result<CopyReport> CopyPoint(Repository& from, Repository& to, const std::string& id,
                             std::atomic<uint64_t>* progress = nullptr);

}  // namespace vmbackup::repo
