#include "base/strings.h"

#include <gtest/gtest.h>

#include <vector>

namespace vmbackup {
namespace {

TEST(ParseDuration, Units) {
  EXPECT_EQ(*ParseDuration("90"), 90);
  EXPECT_EQ(*ParseDuration("0"), 0);
  EXPECT_EQ(*ParseDuration("30m"), 1800);
  EXPECT_EQ(*ParseDuration("1h"), 3600);
  EXPECT_EQ(*ParseDuration("2d"), 172800);
  EXPECT_EQ(*ParseDuration("1w"), 604800);
  EXPECT_FALSE(ParseDuration(""));
  EXPECT_FALSE(ParseDuration("h"));
  EXPECT_FALSE(ParseDuration("5x"));
  EXPECT_FALSE(ParseDuration("-5m"));
  EXPECT_FALSE(ParseDuration("99999999999999999999d"));
}

TEST(ParseSize, Suffixes) {
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_EQ(*ParseSize("64K"), 65536u);
  EXPECT_EQ(*ParseSize("64k"), 65536u);
  EXPECT_EQ(*ParseSize("10M"), 10u << 20);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
  EXPECT_EQ(*ParseSize("3T"), 3ull << 40);
  EXPECT_EQ(*ParseSize("1GiB"), 1ull << 30);
  EXPECT_EQ(*ParseSize("1MB"), 1ull << 20);
  EXPECT_EQ(*ParseSize("7B"), 7u);
}

TEST(ParseSize, Rejects) {
  for (const char* bad :
       {"", "G", "12X", "1.5G", "-1", "99999999999999999999", "20000000P", "1GG"}) {
    Result<uint64_t> r = ParseSize(bad);
    EXPECT_FALSE(r.has_value()) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseUint, DecimalAndHex) {
  EXPECT_EQ(*ParseUint("0x1f"), 31u);
  EXPECT_EQ(*ParseUint("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(ParseUint("18446744073709551616"));
  EXPECT_FALSE(ParseUint("12a"));
}

TEST(Utf8, FindsInvalid) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xc3\xa9"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\xff"), 2u);
  EXPECT_EQ(FindInvalidUtf8("ab\xc3"), 2u);         // truncated sequence
  EXPECT_EQ(FindInvalidUtf8("\xc0\xaf"), 0u);       // overlong
  EXPECT_EQ(FindInvalidUtf8("x\xed\xa0\x80"), 1u);  // surrogate
}

TEST(Strings, Helpers) {
  EXPECT_EQ(Trim("  a b \r\n"), "a b");
  EXPECT_EQ(Trim("   "), "");
  EXPECT_TRUE(EqualsIgnoreCase("createType", "CREATETYPE"));
  EXPECT_FALSE(EqualsIgnoreCase("cid", "cids"));
  EXPECT_EQ(StrFormat("%d-%s", 4, "x"), "4-x");
  EXPECT_EQ(StrFormat("%s", std::string(1000, 'a').c_str()).size(), 1000u);
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(3ull << 30), "3.0 GiB");
}

TEST(Strings, LastLines) {
  EXPECT_EQ(LastLines("a\n\n  b  \r\nc\n", 2, " | "), "b | c");  // blanks skipped, trimmed
  EXPECT_EQ(LastLines("one\ntwo", 5, "; "), "one; two");
  EXPECT_EQ(LastLines("\x1b[0mlogin:\x07 \n", 1, ""), "[0mlogin:");  // control bytes dropped
  EXPECT_EQ(LastLines("", 3, ","), "");
  EXPECT_EQ(LastLines("x\ny", 0, ","), "");
}

TEST(Strings, IsAllZero) {
  std::vector<uint8_t> v(1000, 0);
  EXPECT_TRUE(IsAllZero(v.data(), v.size()));
  for (size_t at : {size_t(0), size_t(63), size_t(64), size_t(999)}) {
    v[at] = 1;
    EXPECT_FALSE(IsAllZero(v.data(), v.size())) << at;
    v[at] = 0;
  }
  EXPECT_TRUE(IsAllZero(v.data(), 0));
}

}  // namespace
}  // namespace vmbackup

namespace vmbackup {
namespace {

TEST(ParseTimeOrAge, DatesTimesOffsetsAndAges) {
  const int64_t day = 1795305600;  // 2026-11-22T00:00:00Z
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22", 0), day);
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22T08:30", 0), day + 8 * 3600 + 30 * 60);
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22 08:30:15Z", 0), day + 8 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22T08:30:15.123456Z", 0), day + 8 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22T08:30:00+02:00", 0), day + 6 * 3600 + 30 * 60);
  EXPECT_EQ(*ParseTimeOrAge("2026-11-22T08:30:00-0130", 0), day + 10 * 3600);
  EXPECT_EQ(*ParseTimeOrAge("7d", day), day - 7 * 86400);
  EXPECT_EQ(*ParseTimeOrAge("12h", day), day - 12 * 3600);
  EXPECT_EQ(UtcRfc3339(day + 61), "2026-11-22T00:01:01Z");
  // Anything else is an error, never "no filter".
  for (const char* bad :
       {"", "yesterday", "2026-13-01", "2026-02-30", "2026-11-22T25:00", "2026-11-22X",
        "22/11/2026", "7x", "2026-11-22T08:30+25:00", "2026-11-2"}) {
    auto r = ParseTimeOrAge(bad, day);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace vmbackup
