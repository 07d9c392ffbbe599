#include "base/huge_page_arena.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace vmbackup {

void* HugePageArena::Blocks::do_allocate(size_t bytes, size_t alignment) {
  const size_t align = alignment > kHuge ? alignment : kHuge;
  const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(align, size);
  if (!p) throw std::bad_alloc();
  ::madvise(p, size, MADV_HUGEPAGE);  // a hint: where refused, 4 KiB pages as before
  return p;
}

void HugePageArena::Blocks::do_deallocate(void* p, size_t, size_t) { std::free(p); }

}  // namespace vmbackup
