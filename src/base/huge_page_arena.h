// HugePageArena: memory for many small objects that live as long as their container (the
// repository's index: one node per blob). It hands out pieces of large blocks that ask the
// kernel for transparent huge pages, so filling it faults once per 2 MiB rather than once per
// 4 KiB page: on a VM each fault also costs the host's work, and loading a 16,000-entry index
// spent most of its time in page faults. Freed pieces are not reused; everything goes back
// when the arena is destroyed. Not thread-safe: the container's lock guards it.
#pragma once

#include <cstddef>
#include <memory_resource>

namespace vmbackup {

class HugePageArena final : public std::pmr::memory_resource {
 public:
  HugePageArena() = default;
  HugePageArena(const HugePageArena&) = delete;
  HugePageArena& operator=(const HugePageArena&) = delete;

 private:
  // Blocks from the system, in 2 MiB multiples on 2 MiB boundaries, marked MADV_HUGEPAGE.
  class Blocks final : public std::pmr::memory_resource {
    void* do_allocate(size_t bytes, size_t alignment) override;
    void do_deallocate(void* p, size_t bytes, size_t alignment) override;
    bool do_is_equal(const memory_resource& other) const noexcept override {
      return this == &other;
    }
  };

  void* do_allocate(size_t bytes, size_t alignment) override {
    return pieces_.allocate(bytes, alignment);
  }
  void do_deallocate(void*, size_t, size_t) override {}
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  static constexpr size_t kHuge = 2 << 20;
  Blocks blocks_;
  std::pmr::monotonic_buffer_resource pieces_{kHuge, &blocks_};
};

}  // namespace vmbackup
