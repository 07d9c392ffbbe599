#include "s3/s3_client.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>

#include "base/strings.h"
#include "xml/xml.h"

namespace vmbackup::s3 {
namespace {

// "Mon, 30 Nov 2026 19:00:00 GMT" (HTTP) or "2026-11-30T19:00:00.000Z" (S3 XML) -> Unix seconds.
int64_t ParseTime(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (!end) end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  return end ? int64_t(timegm(&tm)) : 0;
}

std::string Header(const http::Response& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : std::string(Trim(it->second));
}

// "2026-12-30T23:30:00Z", as S3 wants retention dates.
std::string IsoTime(int64_t t) {
  std::tm tm{};
  const time_t tt = time_t(t);
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Content-MD5 (base64 of the body's MD5): S3 wants it on every request that sets a lock.
std::string ContentMd5(std::span<const uint8_t> body) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(body.data(), body.size(), md, &n, EVP_md5(), nullptr);
  unsigned char out[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int len = EVP_EncodeBlock(out, md, int(n));
  return std::string(reinterpret_cast<char*>(out), size_t(len));
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Status ErrorOf(const http::Response& r, const std::string& what) {
  std::string code, message;
  if (!r.body.empty()) {
    if (auto doc = xml::Document::Parse(r.body, "S3 error")) {
      code = doc->root().child("Code").text();
      message = doc->root().child("Message").text();
    }
  }
  const std::string detail = StrFormat("%s: HTTP %ld%s%s%s", what.c_str(), r.status,
                                       code.empty() ? "" : (" " + code).c_str(),
                                       message.empty() ? "" : ": ", message.c_str());
  if (r.status >= 500 || r.status == 408 || r.status == 429 || code == "SlowDown" ||
      code == "RequestTimeout")
    return UnavailableError(detail);
  if (r.status == 404) return NotFoundError(detail);
  if (r.status == 412) return AlreadyExistsError(detail);
  if (r.status == 401 || r.status == 403) return PermissionDeniedError(detail);
  if (code == "XAmzContentSHA256Mismatch" || code == "BadDigest")
    return CorruptionError(detail + " (the data changed on its way)");
  return IOError(detail);
}

Result<std::unique_ptr<Client>> Client::Create(const Location& where, const Credentials& keys,
                                               const http::TlsOptions& tls) {
  VMBACKUP_ASSIGN_OR_RETURN(auto http,
                            http::Client::Create(where.endpoint, tls, where.timeout_seconds));
  return std::unique_ptr<Client>(new Client(where, keys, std::move(http)));
}

http::Request Client::Signed(const std::string& method, const std::string& key,
                             const std::vector<std::pair<std::string, std::string>>& query,
                             std::map<std::string, std::string> headers,
                             std::span<const uint8_t> body) const {
  SignedRequest r;
  r.method = method;
  r.host = where_.host;
  r.path = "/" + where_.bucket + (key.empty() ? "" : "/" + key);
  r.query = query;
  r.headers = std::move(headers);
  r.payload_sha256 = Sha256Hex(body);
  const Signature sig = Sign(r, keys_, where_.region, AmzDateNow());
  http::Request req;
  req.method = method;
  req.path =
      http::UrlEncode(r.path, true) + (sig.query_string.empty() ? "" : "?" + sig.query_string);
  req.headers = sig.headers;
  req.headers.erase("host");  // libcurl writes it from the URL
  req.headers["authorization"] = sig.authorization;
  return req;
}

namespace {

// No answer (a reset, a timeout, a refused connection) may pass: kUnavailable, which the
// retrying backend asks again; a TLS certificate refused stays kUnauthenticated.
Status NoAnswer(const Status& s) {
  if (s.code() == ErrorCode::kUnauthenticated) return s;
  return UnavailableError(s.message());
}

}  // namespace

Result<http::Response> Client::Send(const std::string& method, const std::string& key,
                                    const std::vector<std::pair<std::string, std::string>>& query,
                                    std::map<std::string, std::string> headers,
                                    std::span<const uint8_t> body) {
  http::Request req = Signed(method, key, query, std::move(headers), body);
  req.body.assign(reinterpret_cast<const char*>(body.data()), body.size());
  auto resp = http_->Send(req);
  if (!resp) return NoAnswer(resp.error());
  return resp;
}

std::string_view LockModeName(LockMode m) {
  return m == LockMode::kCompliance ? "COMPLIANCE" : "GOVERNANCE";
}

Status Client::Put(const std::string& key, std::span<const uint8_t> data, bool create_only,
                   int64_t lock_until, LockMode mode) {
  std::map<std::string, std::string> h = {{"content-type", "application/octet-stream"}};
  if (create_only) h["if-none-match"] = "*";
  if (lock_until > 0) {
    h["x-amz-object-lock-mode"] = std::string(LockModeName(mode));
    h["x-amz-object-lock-retain-until-date"] = IsoTime(lock_until);
    h["content-md5"] = ContentMd5(data);
  }
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("PUT", key, {}, h, data));
  if (r.status == 200) return Status::Ok();
  return ErrorOf(r, "PUT " + where_.endpoint + "/" + where_.bucket + "/" + key);
}

Result<std::vector<uint8_t>> Client::Get(const std::string& key) {
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("GET", key, {}, {}, {}));
  if (r.status != 200)
    return ErrorOf(r, "GET " + where_.endpoint + "/" + where_.bucket + "/" + key);
  return std::vector<uint8_t>(r.body.begin(), r.body.end());
}

Status Client::GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  const std::string range = StrFormat("bytes=%llu-%llu", (unsigned long long)offset,
                                      (unsigned long long)(offset + out.size() - 1));
  const std::string what = "GET " + where_.endpoint + "/" + where_.bucket + "/" + key + " " + range;
  // The body goes straight into `out` (libcurl writes the signed Range header itself).
  size_t got = 0;
  auto r = http_->GetRangeInto(Signed("GET", key, {}, {{"range", range}}, {}), offset, out, &got);
  if (!r) {
    if (r.error().code() == ErrorCode::kProtocol) return CorruptionError(r.error().message());
    return NoAnswer(r.error());
  }
  if (r->status == 206) {
    if (got != out.size())
      return CorruptionError(StrFormat("%s: %zu bytes came", what.c_str(), got));
    return Status::Ok();
  }
  if (r->status == 416) return CorruptionError(what + ": the object is shorter");
  if (r->status != 200) return ErrorOf(*r, what);
  // A server that ignores ranges sends everything: read it whole.
  VMBACKUP_ASSIGN_OR_RETURN(http::Response whole, Send("GET", key, {}, {}, {}));
  if (whole.status != 200) return ErrorOf(whole, what);
  if (whole.body.size() < offset + out.size())
    return CorruptionError(what + ": the object is shorter");
  std::memcpy(out.data(), whole.body.data() + offset, out.size());
  return Status::Ok();
}

Result<ObjectMeta> Client::Head(const std::string& key) {
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("HEAD", key, {}, {}, {}));
  const std::string what = "HEAD " + where_.endpoint + "/" + where_.bucket + "/" + key;
  if (r.status != 200) return HeadError(r, key, what);
  ObjectMeta m;
  m.key = key;
  m.size = std::strtoull(Header(r, "content-length").c_str(), nullptr, 10);
  m.mtime = ParseTime(Header(r, "last-modified"));
  m.version_id = Header(r, "x-amz-version-id");
  if (m.version_id == "null") m.version_id.clear();
  const std::string until = Header(r, "x-amz-object-lock-retain-until-date");
  if (!until.empty()) m.locked_until = ParseTime(until);
  return m;
}

Status Client::SetRetention(const std::string& key, int64_t until, LockMode mode) {
  const std::string body = "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>" +
                           std::string(LockModeName(mode)) + "</Mode><RetainUntilDate>" +
                           IsoTime(until) + "</RetainUntilDate></Retention>";
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("PUT", key, {{"retention", ""}},
                                                   {{"content-type", "application/xml"},
                                                    {"content-md5", ContentMd5(Bytes(body))}},
                                                   Bytes(body)));
  if (r.status == 200 || r.status == 204) return Status::Ok();
  return ErrorOf(r, "PUT retention " + where_.endpoint + "/" + where_.bucket + "/" + key);
}

// A HEAD answer has no body, so no S3 error code: for anything but 404 the same request as a
// GET of one byte tells why (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied).
Status Client::HeadError(const http::Response& head, const std::string& key,
                         const std::string& what) {
  if (head.status == 404) return ErrorOf(head, what);
  auto get = Send("GET", key,
                  key.empty() ? std::vector<std::pair<std::string, std::string>>{{"list-type", "2"},
                                                                                 {"max-keys", "1"}}
                              : std::vector<std::pair<std::string, std::string>>{},
                  {{"range", "bytes=0-0"}}, {});
  if (get && get->status == head.status && !get->body.empty()) return ErrorOf(*get, what);
  return ErrorOf(head, what);
}

Status Client::Delete(const std::string& key) {
  VMBACKUP_ASSIGN_OR_RETURN(ObjectMeta m, Head(key));
  std::vector<std::pair<std::string, std::string>> query;
  if (!m.version_id.empty()) query.push_back({"versionId", m.version_id});
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("DELETE", key, query, {}, {}));
  if (r.status == 204 || r.status == 200) return Status::Ok();
  return ErrorOf(r, "DELETE " + where_.endpoint + "/" + where_.bucket + "/" + key);
}

Result<ListPage> ParseListPage(const std::string& body, const std::string& prefix,
                               const std::string& what) {
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(body, what));
  xml::Node root = doc.root();
  if (root.name() != "ListBucketResult") return ProtocolError(what + ": not a listing");
  ListPage p;
  for (xml::Node c : root.children("Contents")) {
    ObjectMeta m;
    m.key = c.child("Key").text();
    m.size = std::strtoull(c.child("Size").text().c_str(), nullptr, 10);
    m.mtime = ParseTime(c.child("LastModified").text());
    if (m.key.rfind(prefix, 0) != 0) return ProtocolError(what + ": a key outside the prefix");
    p.objects.push_back(std::move(m));
  }
  p.truncated = root.child("IsTruncated").text() == "true";
  p.next_token = root.child("NextContinuationToken").text();
  return p;
}

Result<std::vector<ObjectMeta>> Client::List(const std::string& prefix) {
  std::vector<ObjectMeta> out;
  std::string token;
  for (int page = 0;; ++page) {
    std::vector<std::pair<std::string, std::string>> q = {{"list-type", "2"}, {"prefix", prefix}};
    if (!token.empty()) q.emplace_back("continuation-token", token);
    VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("GET", "", q, {}, {}));
    const std::string what = "list " + where_.url + " (" + prefix + ")";
    if (r.status != 200) return ErrorOf(r, what);
    VMBACKUP_ASSIGN_OR_RETURN(ListPage p, ParseListPage(r.body, prefix, what));
    for (auto& m : p.objects) out.push_back(std::move(m));
    if (!p.truncated) break;
    if (p.next_token.empty() || p.next_token == token || page > 1000000)
      return ProtocolError(what + ": a truncated listing without a new continuation token");
    token = p.next_token;
  }
  return out;
}

Status Client::EnsureBucket(bool object_lock) {
  VMBACKUP_ASSIGN_OR_RETURN(http::Response head, Send("HEAD", "", {}, {}, {}));
  if (head.status == 200) {
    if (!object_lock) return Status::Ok();
    VMBACKUP_ASSIGN_OR_RETURN(bool locks, BucketHasObjectLock());
    if (locks) return Status::Ok();
    return FailedPreconditionError("bucket " + where_.bucket + " at " + where_.endpoint +
                                   " was created without Object Lock, which S3 cannot add "
                                   "later: use a new bucket");
  }
  if (head.status != 404) return HeadError(head, "", "bucket " + where_.url);
  std::map<std::string, std::string> h;
  if (object_lock) h["x-amz-bucket-object-lock-enabled"] = "true";
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("PUT", "", {}, h, {}));
  if (r.status == 200) return Status::Ok();
  return ErrorOf(r, "create bucket " + where_.bucket + " at " + where_.endpoint);
}

Result<bool> Client::BucketHasObjectLock() {
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, Send("GET", "", {{"object-lock", ""}}, {}, {}));
  const std::string what = "GET object lock configuration of bucket " + where_.bucket;
  if (r.status == 404) return false;  // ObjectLockConfigurationNotFoundError
  if (r.status != 200) return ErrorOf(r, what);
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(r.body, what));
  return doc.root().child("ObjectLockEnabled").text() == "Enabled";
}

}  // namespace vmbackup::s3
