// Overflow-checked arithmetic for numbers that come from disk or the wire. Every offset,
// length and count read from a file goes through these before it is used.
#pragma once

#include <cstdint>
#include <optional>

namespace vmbackup {

inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// ceil(a / b); b must not be zero.
constexpr uint64_t DivRoundUp(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Rounds up to a multiple of `align` (any non-zero value); nullopt on overflow.
inline std::optional<uint64_t> CheckedRoundUp(uint64_t value, uint64_t align) {
  uint64_t rem = value % align;
  if (rem == 0) return value;
  return CheckedAdd(value, align - rem);
}

constexpr uint64_t RoundDown(uint64_t value, uint64_t align) { return value - value % align; }

constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// True when [offset, offset+length) lies inside [0, limit), without overflow.
constexpr bool RangeWithin(uint64_t offset, uint64_t length, uint64_t limit) {
  return offset <= limit && length <= limit - offset;
}

}  // namespace vmbackup
