#include "s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>

#include "http/http_client.h"

namespace vmbackup::s3 {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// Header values are signed trimmed, with runs of spaces made one.
std::string CanonicalValue(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string Sha256Hex(std::span<const uint8_t> data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return Hex(md, len);
}

Signature Sign(const SignedRequest& r, const Credentials& c, const std::string& region,
               const std::string& amz_date) {
  Signature s;
  for (const auto& [name, value] : r.headers) s.headers[Lower(name)] = CanonicalValue(value);
  s.headers["host"] = r.host;
  s.headers["x-amz-date"] = amz_date;
  s.headers["x-amz-content-sha256"] = r.payload_sha256;
  if (!c.session_token.empty()) s.headers["x-amz-security-token"] = c.session_token;

  // Query: encoded names and values, sorted by name then value, always name=value.
  std::vector<std::pair<std::string, std::string>> q;
  for (const auto& [name, value] : r.query)
    q.emplace_back(http::UrlEncode(name, false), http::UrlEncode(value, false));
  std::sort(q.begin(), q.end());
  for (const auto& [name, value] : q) {
    if (!s.query_string.empty()) s.query_string += '&';
    s.query_string += name + "=" + value;
  }
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : s.headers) {  // std::map: sorted by name
    canonical_headers += name + ":" + value + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + name;
  }
  s.canonical_request = r.method + "\n" + http::UrlEncode(r.path.empty() ? "/" : r.path, true) +
                        "\n" + s.query_string + "\n" + canonical_headers + "\n" + signed_headers +
                        "\n" + r.payload_sha256;
  const std::string date = amz_date.substr(0, 8);
  const std::string scope = date + "/" + region + "/s3/aws4_request";
  s.string_to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + Sha256Hex(s.canonical_request);
  const std::string k_date = Hmac("AWS4" + c.secret_key, date);
  const std::string k_signing = Hmac(Hmac(Hmac(k_date, region), "s3"), "aws4_request");
  const std::string mac = Hmac(k_signing, s.string_to_sign);
  s.signature = Hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + c.access_key + "/" + scope +
                    ", SignedHeaders=" + signed_headers + ", Signature=" + s.signature;
  return s;
}

std::string AmzDateNow() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[20];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace vmbackup::s3
