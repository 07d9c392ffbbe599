// Small string helpers: printf-style formatting (GCC 12 has no <format>), size parsing with
// binary suffixes, and validation of text read from files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmbackup {

// printf into a std::string.
std::string StrFormat(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Parses "512", "64K", "10M", "2G", "3T" (binary multiples; "KiB"/"KB" accepted too).
// Errors: kInvalidArgument naming the text, on junk, empty input or overflow.
Result<uint64_t> ParseSize(std::string_view text);

// Parses a duration into seconds: "90", "90s", "30m", "12h", "7d", "2w".
// Errors: kInvalidArgument naming the text.
Result<int64_t> ParseDuration(std::string_view text);

// A point in time as Unix seconds, from either an ISO 8601 date or date and time ("2026-11-22",
// "2026-11-22T08:30", "2026-11-22 08:30:15Z", "2026-11-22T08:30:00+02:00"; no zone means UTC)
// or an age ("7d", "12h": `now` minus that, ParseDuration). Anything else is kInvalidArgument.
Result<int64_t> ParseTimeOrAge(std::string_view text, int64_t now);
// "2026-11-22T08:30:00Z" for Unix seconds.
std::string UtcRfc3339(int64_t seconds);

// Parses a decimal or (with 0x) hexadecimal unsigned integer, the whole text.
Result<uint64_t> ParseUint(std::string_view text);

// "2.0 GiB"-style rendering of a byte count, for humans.
std::string HumanBytes(uint64_t bytes);

// Returns the byte offset of the first invalid UTF-8 sequence, or npos when valid.
size_t FindInvalidUtf8(std::string_view text);

std::string_view Trim(std::string_view s);
// "a-b--c" split at '-' -> {"a", "b", "", "c"}.
std::vector<std::string> Split(std::string_view s, char sep);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
// The last `lines` non-blank lines of `text` (a program's complaint, a console log), trimmed,
// control characters dropped, joined with `sep`: enough to name a problem, not a wall of text.
std::string LastLines(std::string_view text, size_t lines, std::string_view sep);

// The current UTC time as RFC 3339 ("2026-11-22T07:00:00Z").
std::string UtcNowRfc3339();

// True when every byte of the buffer is zero (fast, word at a time).
bool IsAllZero(const uint8_t* data, size_t size);

}  // namespace vmbackup
