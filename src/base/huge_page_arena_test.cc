#include "base/huge_page_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory_resource>
#include <string>
#include <unordered_map>

namespace vmbackup {
namespace {

// A map in the arena keeps its entries through rehashes, pieces honour their alignment, and a
// piece larger than a block (a big bucket array) is served whole.
TEST(HugePageArena, HoldsAMapThroughRehashesAndLargePieces) {
  HugePageArena arena;
  std::pmr::unordered_map<uint64_t, std::pmr::string> map(&arena);
  for (uint64_t i = 0; i < 200000; ++i) map.emplace(i, std::to_string(i * 7) + " padding");
  ASSERT_EQ(map.size(), 200000u);
  for (uint64_t i = 0; i < 200000; i += 997)
    ASSERT_EQ(std::string(map.at(i)), std::to_string(i * 7) + " padding");
  map.erase(5);
  EXPECT_EQ(map.count(5), 0u);
  void* aligned = arena.allocate(100, 256);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 256, 0u);
  auto* big = static_cast<uint8_t*>(arena.allocate(5u << 20, 64));
  big[0] = 1;
  big[(5u << 20) - 1] = 2;
  EXPECT_EQ(big[0] + big[(5u << 20) - 1], 3);
  EXPECT_TRUE(arena.is_equal(arena));
  HugePageArena other;
  EXPECT_FALSE(arena.is_equal(other));
}

}  // namespace
}  // namespace vmbackup
