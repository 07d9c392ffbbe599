#include "base/status.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/result.h"

namespace vmbackup {
namespace {

Result<int> Half(int v) {
  if (v % 2) return InvalidArgumentError("odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  VMBACKUP_ASSIGN_OR_RETURN(int h, Half(v));
  VMBACKUP_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = CorruptionError("bad magic").WithContext("a.vmdk");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kCorruption);
  EXPECT_EQ(s.message(), "a.vmdk: bad magic");
  EXPECT_EQ(s.ToString(), "corruption: a.vmdk: bad magic");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
  EXPECT_TRUE(UnavailableError("later").retryable());
  EXPECT_FALSE(IOError("now").retryable());
}

TEST(Status, PosixErrorMapsErrno) {
  EXPECT_EQ(PosixError("open x", ENOENT).code(), ErrorCode::kNotFound);
  EXPECT_EQ(PosixError("open x", EACCES).code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(PosixError("open x", EEXIST).code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(PosixError("write", ENOSPC).code(), ErrorCode::kIOError);
  EXPECT_NE(PosixError("open x", ENOENT).message().find("open x: "), std::string::npos);
}

TEST(Result, ValueAndErrorPropagation) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "odd");
  Result<int> bogus{Status::Ok()};  // an ok Status is not a value
  EXPECT_FALSE(bogus.has_value());
  EXPECT_EQ(bogus.error().code(), ErrorCode::kInternal);
}

TEST(CheckedMath, Overflow) {
  EXPECT_EQ(CheckedAdd(1, 2), 3u);
  EXPECT_FALSE(CheckedAdd(UINT64_MAX, 1));
  EXPECT_FALSE(CheckedMul(uint64_t(1) << 33, uint64_t(1) << 33));
  EXPECT_EQ(CheckedRoundUp(5, 4), 8u);
  EXPECT_FALSE(CheckedRoundUp(UINT64_MAX, 4));
  EXPECT_EQ(DivRoundUp(9, 4), 3u);
  EXPECT_TRUE(RangeWithin(10, 5, 15));
  EXPECT_FALSE(RangeWithin(10, 6, 15));
  EXPECT_FALSE(RangeWithin(UINT64_MAX, 2, UINT64_MAX));
  EXPECT_TRUE(IsPowerOfTwo(64));
  EXPECT_FALSE(IsPowerOfTwo(0));
  EXPECT_FALSE(IsPowerOfTwo(96));
}

TEST(Endian, RoundTrips) {
  uint8_t b[8];
  StoreLE32(b, 0x564D444B);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(b), 4), "KDMV");
  EXPECT_EQ(LoadLE32(b), 0x564D444Bu);
  StoreBE64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[7], 8);
  EXPECT_EQ(LoadBE64(b), 0x0102030405060708ull);
  StoreLE64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 8);
  EXPECT_EQ(LoadLE64(b), 0x0102030405060708ull);
  StoreBE16(b, 0xABCD);
  EXPECT_EQ(LoadBE16(b), 0xABCD);
  StoreLE16(b, 0xABCD);
  EXPECT_EQ(LoadLE16(b), 0xABCD);
  StoreBE32(b, 0xDEADBEEF);
  EXPECT_EQ(LoadBE32(b), 0xDEADBEEFu);
}

}  // namespace
}  // namespace vmbackup
