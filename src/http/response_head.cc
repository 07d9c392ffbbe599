#include "http/response_head.h"

#include <cctype>

#include "base/strings.h"

namespace vmbackup::http {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 token characters (a field name).
bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

// Decimal digits only, no sign, no overflow.
std::optional<uint64_t> Decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint64_t(c - '0');
  }
  return v;
}

Status Bad(const std::string& what) {
  return ProtocolError("the server's HTTP answer is malformed: " + what);
}

}  // namespace

Result<ResponseHead> ParseResponseHead(std::string_view head) {
  ResponseHead out;
  bool first = true, ended = false, http10 = false;
  while (!head.empty()) {
    const size_t lf = head.find('\n');
    if (lf == std::string_view::npos) return Bad("a line without an end");
    std::string_view line = head.substr(0, lf);
    head.remove_prefix(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (first) return Bad("an empty status line");
      ended = true;
      break;
    }
    if (first) {
      first = false;
      // HTTP/1.x SP 3DIGIT [SP reason]
      if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." ||
          (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
          (line.size() > 12 && line[12] != ' '))
        return Bad("status line '" + std::string(line.substr(0, 80)) + "'");
      auto code = Decimal(line.substr(9, 3));
      if (!code || *code < 100) return Bad("status code '" + std::string(line.substr(9, 3)) + "'");
      out.status = int(*code);
      http10 = line[7] == '0';
      if (line.size() > 13) out.reason = std::string(line.substr(13));
      continue;
    }
    if (line.front() == ' ' || line.front() == '\t') return Bad("a folded header line");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return Bad("header line '" + std::string(line.substr(0, 80)) + "'");
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!IsTokenChar(c)) return Bad("header name '" + std::string(name.substr(0, 80)) + "'");
    const std::string key = Lower(name);
    const std::string value(TrimSpace(line.substr(colon + 1)));
    auto [it, added] = out.headers.emplace(key, value);
    if (!added) it->second += ", " + value;
  }
  if (!ended) return Bad("the head has no blank line at its end");
  if (!head.empty()) return Bad("bytes after the head's blank line");

  if (auto it = out.headers.find("content-length"); it != out.headers.end()) {
    // Repeated equal values ("5, 5") are one length; differing ones are an attack or a bug.
    std::optional<uint64_t> length;
    std::string_view rest = it->second;
    while (true) {
      const size_t comma = rest.find(',');
      auto v = Decimal(TrimSpace(rest.substr(0, comma)));
      if (!v || (length && *length != *v)) return Bad("Content-Length '" + it->second + "'");
      length = v;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    out.content_length = length;
  }
  if (auto it = out.headers.find("transfer-encoding"); it != out.headers.end())
    out.chunked = Lower(it->second) != "identity";
  // HTTP/1.0 closes after the answer unless the server says it keeps the connection.
  const std::string connection =
      Lower(out.headers.count("connection") ? out.headers["connection"] : "");
  out.connection_close = connection.find("close") != std::string::npos ||
                         (http10 && connection.find("keep-alive") == std::string::npos);
  return out;
}

Result<ByteRange> ParseContentRange(std::string_view value) {
  std::string_view v = TrimSpace(value);
  if (v.substr(0, 6) != "bytes ") return Bad("Content-Range '" + std::string(value) + "'");
  v.remove_prefix(6);
  const size_t dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return Bad("Content-Range '" + std::string(value) + "'");
  auto first = Decimal(v.substr(0, dash));
  auto last = Decimal(v.substr(dash + 1, slash - dash - 1));
  std::string_view total = v.substr(slash + 1);
  if (!first || !last || *last < *first || (total != "*" && !Decimal(total)))
    return Bad("Content-Range '" + std::string(value) + "'");
  return ByteRange{*first, *last};
}

}  // namespace vmbackup::http
