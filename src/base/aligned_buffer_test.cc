#include "base/aligned_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace vmbackup {
namespace {

TEST(AlignedBuffer, KeepsItsBytesAndAlignmentAsItGrows) {
  AlignedBuffer b;
  std::vector<uint8_t> piece(100 << 10);
  size_t total = 0;
  for (int i = 0; total < (5u << 20); ++i) {  // past the huge-page size, through several growths
    for (auto& x : piece) x = uint8_t(i);
    b.append(piece);
    total += piece.size();
    ASSERT_EQ(b.size(), total);
    // Small buffers start on a 4 KiB boundary (O_DIRECT), large ones on a 2 MiB one.
    const auto addr = reinterpret_cast<uintptr_t>(b.data());
    ASSERT_EQ(addr % AlignedBuffer::kAlign, 0u);
    if (total > AlignedBuffer::kHuge) {
      ASSERT_EQ(addr % AlignedBuffer::kHuge, 0u);
    }
  }
  for (size_t at = 0; at < total; at += piece.size())
    ASSERT_EQ(b.data()[at], uint8_t(at / piece.size())) << at;
  b.clear();
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace vmbackup
