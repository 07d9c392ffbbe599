#include "s3/s3_url.h"

#include <cstdlib>
#include <fstream>

#include "base/strings.h"

namespace vmbackup::s3 {
namespace {

std::string Getenv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

bool IsS3Url(const std::string& text) { return text.rfind("s3:", 0) == 0; }

Result<Location> ParseS3Url(const std::string& text) {
  if (!IsS3Url(text)) return InvalidArgumentError("not an S3 repository URL: " + text);
  Location l;
  l.url = text;
  std::string rest = text.substr(3);
  std::string query;
  if (const size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const bool https = rest.rfind("https://", 0) == 0;
  if (!https && rest.rfind("http://", 0) != 0)
    return InvalidArgumentError(text + ": write s3:https://HOST[:PORT]/BUCKET[/PREFIX]");
  rest = rest.substr(https ? 8 : 7);
  const size_t slash = rest.find('/');
  l.host = rest.substr(0, slash);
  if (l.host.empty()) return InvalidArgumentError(text + ": no host");
  l.endpoint = (https ? "https://" : "http://") + l.host;
  std::string path = slash == std::string::npos ? "" : rest.substr(slash + 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  const size_t b = path.find('/');
  l.bucket = path.substr(0, b);
  if (b != std::string::npos) l.prefix = path.substr(b + 1) + "/";
  // S3's bucket rules: 3-63 lower-case letters, digits, '.', '-'.
  bool ok = l.bucket.size() >= 3 && l.bucket.size() <= 63;
  for (char c : l.bucket)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-');
  if (!ok)
    return InvalidArgumentError(text + ": bucket '" + l.bucket + "' is not a valid bucket name");
  for (const auto& part : Split(l.prefix, '/')) {
    if (part == "." || part == "..")
      return InvalidArgumentError(text + ": the prefix may not hold '.' or '..'");
  }
  for (const auto& kv : Split(query, '&')) {
    if (kv.rfind("region=", 0) == 0) {
      l.region = kv.substr(7);
    } else if (kv.rfind("timeout=", 0) == 0) {
      auto s = ParseUint(kv.substr(8));
      if (!s || *s < 1 || *s > 3600)
        return InvalidArgumentError(text + ": timeout= takes seconds from 1 to 3600");
      l.timeout_seconds = double(*s);
    } else if (!kv.empty()) {
      return InvalidArgumentError(text + ": unknown option '" + kv + "'");
    }
  }
  if (l.region.empty()) l.region = Getenv("AWS_DEFAULT_REGION");
  if (l.region.empty()) l.region = Getenv("AWS_REGION");
  if (l.region.empty()) l.region = "us-east-1";
  return l;
}

Result<Credentials> CredentialsFromEnvironment() {
  Credentials c;
  c.access_key = Getenv("AWS_ACCESS_KEY_ID");
  c.secret_key = Getenv("AWS_SECRET_ACCESS_KEY");
  c.session_token = Getenv("AWS_SESSION_TOKEN");
  if (!c.access_key.empty() && !c.secret_key.empty()) return c;
  std::string file = Getenv("AWS_SHARED_CREDENTIALS_FILE");
  if (file.empty() && !Getenv("HOME").empty()) file = Getenv("HOME") + "/.aws/credentials";
  std::string profile = Getenv("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  std::ifstream in(file);
  std::string line, section;
  c = Credentials();
  while (in && std::getline(in, line)) {
    const std::string t(Trim(line));
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = std::string(Trim(std::string_view(t).substr(1, t.size() - 2)));
      continue;
    }
    if (section != profile) continue;
    const size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    const std::string key(Trim(std::string_view(t).substr(0, eq)));
    const std::string value(Trim(std::string_view(t).substr(eq + 1)));
    if (key == "aws_access_key_id") c.access_key = value;
    if (key == "aws_secret_access_key") c.secret_key = value;
    if (key == "aws_session_token") c.session_token = value;
  }
  if (c.access_key.empty() || c.secret_key.empty()) {
    return UnauthenticatedError(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile '" +
        profile + "' in " + (file.empty() ? "~/.aws/credentials" : file));
  }
  return c;
}

}  // namespace vmbackup::s3
