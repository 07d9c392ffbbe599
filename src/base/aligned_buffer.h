// A growable byte buffer whose memory starts on a 4 KiB boundary: a pack built in it is written
// with O_DIRECT as it is, without a copy into an aligned bounce buffer. (A std::vector with an
// aligned allocator copies byte by byte: libstdc++ takes its memmove path only for
// std::allocator.)
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <utility>

namespace vmbackup {

class AlignedBuffer {
 public:
  static constexpr size_t kAlign = 4096;
  static constexpr size_t kHuge = 2 << 20;

  AlignedBuffer() = default;
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const uint8_t* begin() const { return data_; }
  const uint8_t* end() const { return data_ + size_; }

  void clear() { size_ = 0; }
  // Room for `n` bytes in all, so appending up to there never moves the bytes.
  void reserve(size_t n) {
    if (n <= capacity_) return;
    // Large buffers (packs) in transparent huge pages where the system allows them: the first
    // touch of fresh memory then faults once per 2 MiB instead of once per 4 KiB (on a VM each
    // fault also costs the host's work: a 100 MiB incremental spent a third of its CPU there).
    const bool huge = n >= kHuge;
    const size_t align = huge ? kHuge : kAlign;
    const size_t capacity = (n + align - 1) / align * align;
    auto* fresh = static_cast<uint8_t*>(std::aligned_alloc(align, capacity));
    if (!fresh) throw std::bad_alloc();
    if (huge) ::madvise(fresh, capacity, MADV_HUGEPAGE);  // a hint: refused, 4 KiB pages
    if (size_) std::memcpy(fresh, data_, size_);
    std::free(data_);
    data_ = fresh;
    capacity_ = capacity;
  }
  void append(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    if (size_ + bytes.size() > capacity_) reserve(std::max(capacity_ * 2, size_ + bytes.size()));
    std::memcpy(data_ + size_, bytes.data(), bytes.size());
    size_ += bytes.size();
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

}  // namespace vmbackup
