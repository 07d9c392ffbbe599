// AWS Signature Version 4 for S3 requests, written on OpenSSL (SHA-256, HMAC). Written by hand
// because libcurl's CURLOPT_AWS_SIGV4 in Debian bookworm (7.88) signs a canonical request that
// S3 servers refuse in four cases (../shared/tools/rgw/RECIPE.md section 5: no
// x-amz-content-sha256, query parameters unsorted and bare names without '=', path and query
// signed as given instead of AWS-encoded, headers sorted with their values), and its behaviour
// changes with the system's curl version.
//
// The signature covers the payload's real SHA-256 (x-amz-content-sha256), so a server that
// checks it refuses a body damaged on the way.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmbackup::s3 {

struct Credentials {
  std::string access_key, secret_key;
  std::string session_token;  // temporary credentials: sent as x-amz-security-token
};

struct SignedRequest {
  std::string method;  // GET, PUT, HEAD, DELETE, POST
  std::string host;    // "127.0.0.1:8000" (with the port when it is not the scheme's default)
  // Unencoded: "/bucket/key with spaces". Path and query are encoded as AWS wants (every byte
  // but A-Z a-z 0-9 - _ . ~ as %XX, upper-case; '/' kept in the path): http::UrlEncode.
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;  // unencoded names and values
  // Headers to send and sign, besides host, x-amz-date and x-amz-content-sha256 (added here).
  std::map<std::string, std::string> headers;
  std::string payload_sha256;  // hex; "UNSIGNED-PAYLOAD" is allowed but never used by vmbackup
};

// Hex of SHA-256 of `data`.
std::string Sha256Hex(std::span<const uint8_t> data);
inline std::string Sha256Hex(std::string_view s) {
  return Sha256Hex({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

// The pieces of one signature, for tests and for messages.
struct Signature {
  std::string canonical_request, string_to_sign, signature;
  std::string authorization;                   // the Authorization header's value
  std::map<std::string, std::string> headers;  // every header to send (lower-case names)
  std::string query_string;                    // encoded and sorted, without '?'
};

// Signs `r` at time `amz_date` ("20130524T000000Z") for `region` and service "s3".
Signature Sign(const SignedRequest& r, const Credentials& c, const std::string& region,
               const std::string& amz_date);

// The current UTC time as SigV4 wants it: "YYYYMMDDTHHMMSSZ".
std::string AmzDateNow();

}  // namespace vmbackup::s3
