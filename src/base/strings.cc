#include "base/strings.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/checked_math.h"

namespace vmbackup {

std::string StrFormat(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  std::string out;
  if (n < 0) {
    va_end(ap2);
    return out;
  }
  if (static_cast<size_t>(n) < sizeof small) {
    out.assign(small, static_cast<size_t>(n));
  } else {
    out.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(out.data(), out.size(), fmt, ap2);
    out.resize(static_cast<size_t>(n));
  }
  va_end(ap2);
  return out;
}

Result<uint64_t> ParseUint(std::string_view text) {
  if (text.empty()) return InvalidArgumentError("empty number");
  uint64_t base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  uint64_t v = 0;
  for (char c : digits) {
    uint64_t d;
    if (c >= '0' && c <= '9')
      d = uint64_t(c - '0');
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = uint64_t(c - 'a' + 10);
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = uint64_t(c - 'A' + 10);
    else
      return InvalidArgumentError(
          StrFormat("'%.*s' is not a number", int(text.size()), text.data()));
    auto m = CheckedMul(v, base);
    auto a = m ? CheckedAdd(*m, d) : std::nullopt;
    if (!a)
      return InvalidArgumentError(StrFormat("'%.*s' is too large", int(text.size()), text.data()));
    v = *a;
  }
  return v;
}

Result<int64_t> ParseDuration(std::string_view text) {
  std::string_view t = Trim(text);
  int64_t unit = 1;
  if (!t.empty() && !(t.back() >= '0' && t.back() <= '9')) {
    switch (t.back()) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      case 'w': unit = 7 * 86400; break;
      default: unit = 0;
    }
    t.remove_suffix(1);
  }
  Result<uint64_t> n =
      t.empty() || t[0] < '0' || t[0] > '9' ? InvalidArgumentError("") : ParseUint(t);
  if (unit == 0 || !n || *n > uint64_t(INT64_MAX / unit)) {
    return InvalidArgumentError(
        StrFormat("invalid duration '%.*s': expected a number with an optional s, m, h, d or w",
                  int(text.size()), text.data()));
  }
  return int64_t(*n) * unit;
}

Result<int64_t> ParseTimeOrAge(std::string_view text, int64_t now) {
  const std::string t(Trim(text));
  auto bad = [&] {
    return InvalidArgumentError(
        "invalid time '" + t +
        "': expected a date or date and time (2026-11-22, 2026-11-22T08:30:00Z, "
        "2026-11-22T08:30+02:00) or an age (7d, 12h, 30m)");
  };
  if (!t.empty() && t.find('-') == std::string::npos) {
    auto age = ParseDuration(t);
    if (!age) return bad();
    return now - *age;
  }
  // YYYY-MM-DD, then optionally [T ]HH:MM[:SS[.fraction]], then optionally Z or +-HH[:]MM.
  int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return bad();
  size_t i = 10;
  if (i < t.size() && (t[i] == 'T' || t[i] == 't' || t[i] == ' ')) {
    int n = 0;
    if (std::sscanf(t.c_str() + i + 1, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5) return bad();
    i += 1 + size_t(n);
    if (i < t.size() && t[i] == ':') {
      if (std::sscanf(t.c_str() + i + 1, "%2d%n", &sec, &n) != 1 || n != 2) return bad();
      i += 3;
      if (i < t.size() && t[i] == '.') {
        ++i;
        while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
      }
    }
  }
  int64_t offset = 0;
  if (i < t.size()) {
    if ((t[i] == 'Z' || t[i] == 'z') && i + 1 == t.size()) {
      ++i;
    } else if (t[i] == '+' || t[i] == '-') {
      int oh = 0, om = 0, n = 0;
      const char* z = t.c_str() + i + 1;
      if (std::sscanf(z, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5) {
      } else if (std::sscanf(z, "%2d%2d%n", &oh, &om, &n) == 2 && n == 4) {
      } else if (std::sscanf(z, "%2d%n", &oh, &n) == 1 && n == 2) {
      } else {
        return bad();
      }
      if (oh > 23 || om > 59) return bad();
      offset = (t[i] == '+' ? 1 : -1) * (int64_t(oh) * 3600 + om * 60);
      i += 1 + size_t(n);
    }
  }
  if (i != t.size() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return bad();
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const time_t utc = timegm(&tm);
  if (tm.tm_mday != d) return bad();  // timegm normalized an impossible date (Feb 30)
  return int64_t(utc) - offset;
}

std::string UtcRfc3339(int64_t seconds) {
  time_t t = time_t(seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<uint64_t> ParseSize(std::string_view text) {
  std::string_view t = Trim(text);
  size_t i = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
  std::string_view num = t.substr(0, i), suffix = t.substr(i);
  auto bad = [&] {
    return InvalidArgumentError(
        StrFormat("invalid size '%.*s': expected a number with an optional K, M, G or T suffix",
                  int(text.size()), text.data()));
  };
  if (num.empty()) return bad();
  Result<uint64_t> n = ParseUint(num);
  if (!n) return bad();
  unsigned shift = 0;
  if (!suffix.empty()) {
    char c = suffix[0];
    switch (c) {
      case 'k':
      case 'K': shift = 10; break;
      case 'm':
      case 'M': shift = 20; break;
      case 'g':
      case 'G': shift = 30; break;
      case 't':
      case 'T': shift = 40; break;
      case 'p':
      case 'P': shift = 50; break;
      case 'b':
      case 'B': shift = 0; break;
      default: return bad();
    }
    std::string_view rest = suffix.substr(1);
    if (c == 'b' || c == 'B') {
      if (!rest.empty()) return bad();
    } else if (!(rest.empty() || rest == "B" || rest == "iB" || rest == "b")) {
      return bad();
    }
  }
  auto v = CheckedMul(*n, uint64_t(1) << shift);
  if (!v)
    return InvalidArgumentError(
        StrFormat("size '%.*s' is too large", int(text.size()), text.data()));
  return *v;
}

std::string HumanBytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return StrFormat("%llu B", static_cast<unsigned long long>(bytes));
  return StrFormat("%.1f %s", v, units[u]);
}

size_t FindInvalidUtf8(std::string_view s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    unsigned char c = p[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else
      return i;
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size() || (p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string UtcNowRfc3339() {
  time_t t = ::time(nullptr);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool IsAllZero(const uint8_t* data, size_t size) {
  size_t i = 0;
  for (; i + 64 <= size; i += 64) {
    uint64_t w[8];
    std::memcpy(w, data + i, 64);
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  for (; i < size; ++i)
    if (data[i]) return false;
  return true;
}

std::string LastLines(std::string_view text, size_t lines, std::string_view sep) {
  std::vector<std::string> kept;
  for (const auto& raw : Split(text, '\n')) {
    std::string line;
    for (char c : raw) {
      if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) line += c;
    }
    const std::string_view t = Trim(line);
    if (!t.empty()) kept.emplace_back(t);
  }
  if (kept.size() > lines) kept.erase(kept.begin(), kept.end() - ptrdiff_t(lines));
  std::string out;
  for (const auto& l : kept) {
    if (!out.empty()) out += sep;
    out += l;
  }
  return out;
}

}  // namespace vmbackup
