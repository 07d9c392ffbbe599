#include "hv/vsphere/vsphere_source.h"

#include <cctype>

#include "base/strings.h"
#include "http/http_client.h"

namespace vmbackup::hv::vsphere {
namespace {

// %XX decoding of a query value.
std::string Unpercent(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string SourceUri::BaseUrl() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "https://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<SourceUri> ParseSourceUri(const std::string& uri) {
  const std::string scheme = "vsphere://";
  // The URI as messages show it: a password someone put in it is never repeated.
  std::string shown = uri;
  if (size_t at = shown.find('@'); at != std::string::npos && shown.rfind(scheme, 0) == 0) {
    size_t colon = shown.find(':', scheme.size());
    if (colon != std::string::npos && colon < at) shown.replace(colon + 1, at - colon - 1, "***");
  }
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("source '" + shown + "': " + why +
                                " (expected vsphere://USER@HOST[:PORT][/DATACENTER]"
                                "[?thumbprint=SHA256:...])");
  };
  if (uri.rfind(scheme, 0) != 0) return bad("not a vsphere:// URI");
  std::string rest = uri.substr(scheme.size());
  std::string query;
  if (size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  SourceUri s;
  size_t at = rest.rfind('@');
  if (at == std::string::npos) return bad("no user name");
  s.user = Unpercent(rest.substr(0, at));
  if (s.user.find(':') != std::string::npos)
    return bad("a password does not belong in the URI; use --password-file");
  if (s.user.empty()) return bad("empty user name");
  rest = rest.substr(at + 1);
  std::string hostport = rest.substr(0, rest.find('/'));
  if (rest.find('/') != std::string::npos)
    s.datacenter = Unpercent(rest.substr(rest.find('/') + 1));
  while (!s.datacenter.empty() && s.datacenter.back() == '/') s.datacenter.pop_back();
  if (!hostport.empty() && hostport[0] == '[') {  // [IPv6]:port
    size_t close = hostport.find(']');
    if (close == std::string::npos) return bad("unclosed [ in the host");
    s.host = hostport.substr(1, close - 1);
    hostport = hostport.substr(close + 1);
    if (!hostport.empty() && hostport[0] != ':') return bad("junk after the host");
  } else {
    s.host = hostport.substr(0, hostport.find(':'));
    hostport = hostport.find(':') == std::string::npos ? "" : hostport.substr(hostport.find(':'));
  }
  if (s.host.empty()) return bad("no host");
  if (!hostport.empty()) {
    auto port = ParseUint(hostport.substr(1));
    if (!port || *port == 0 || *port > 65535) return bad("bad port '" + hostport.substr(1) + "'");
    s.port = int(*port);
  }
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    std::string kv =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    start = amp == std::string::npos ? query.size() : amp + 1;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    std::string k = kv.substr(0, eq),
                v = eq == std::string::npos ? "" : Unpercent(kv.substr(eq + 1));
    if (k == "thumbprint") {
      auto t = http::NormalizeSha256Thumbprint(v);
      if (!t) return bad(t.error().message());
      s.thumbprint = *t;
    } else if (k == "ca") {
      s.ca_file = v;
    } else if (k == "datastore") {
      if (v.empty() || v.find_first_of("[]/") != std::string::npos)
        return bad("datastore '" + v + "' is not a datastore name");
      s.datastore = v;
    } else {
      return bad("unknown parameter '" + k + "' (thumbprint, ca, datastore)");
    }
  }
  return s;
}

Result<DatastorePath> ParseDatastorePath(const std::string& text) {
  if (text.size() < 3 || text[0] != '[')
    return CorruptionError("datastore path '" + text + "' does not start with [datastore]");
  size_t close = text.find(']');
  if (close == std::string::npos || close == 1)
    return CorruptionError("datastore path '" + text + "' has no datastore name");
  DatastorePath p{text.substr(1, close - 1), text.substr(close + 1)};
  while (!p.path.empty() && p.path[0] == ' ') p.path.erase(0, 1);
  if (p.path.empty() || p.path[0] == '/')
    return CorruptionError("datastore path '" + text + "' names no file inside the datastore");
  for (size_t i = 0; i <= p.path.size();) {
    size_t slash = p.path.find('/', i);
    std::string part = p.path.substr(i, slash == std::string::npos ? std::string::npos : slash - i);
    if (part == "..")
      return CorruptionError("datastore path '" + text + "' climbs out of its datastore");
    if (slash == std::string::npos) break;
    i = slash + 1;
  }
  return p;
}

Result<std::map<std::string, std::string>> ParseDatastoreMap(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? text.size() : comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      return InvalidArgumentError("--datastore-map '" + item + "': expected [DATASTORE]=/FOLDER");
    std::string ds = item.substr(0, eq), dir = item.substr(eq + 1);
    if (ds.size() >= 2 && ds.front() == '[' && ds.back() == ']') ds = ds.substr(1, ds.size() - 2);
    if (ds.empty() || dir.empty() || dir[0] != '/')
      return InvalidArgumentError("--datastore-map '" + item + "': expected [DATASTORE]=/FOLDER");
    out[ds] = dir;
  }
  return out;
}

}  // namespace vmbackup::hv::vsphere
