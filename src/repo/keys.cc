#include "repo/keys.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/process.h"
#include "base/strings.h"
#include "repo/crypto.h"
#include "repo/json_fields.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

constexpr const char* kKeyCheck = "vmbackup key check";
// scrypt parameters of new passphrase keys (about 32 MiB and 0.1 s).
constexpr uint64_t kScryptN = 32768, kScryptR = 8, kScryptP = 1;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Result<std::vector<uint8_t>> ReadKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open key file " + path, errno);
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0) return PosixError("read key file " + path, errno);
  auto key = FromHex(std::string_view(buf, size_t(n)));
  if (!key || key->size() != 64) {
    return InvalidArgumentError("key file " + path + " must hold 64 bytes as 128 hex digits");
  }
  return *key;
}

Status WriteNewKeyFile(const std::string& path, std::span<const uint8_t> key) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError("create key file " + path, errno);
  std::string hex = ToHex(key) + "\n";
  bool ok = ::write(fd, hex.data(), hex.size()) == ssize_t(hex.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return PosixError("write key file " + path, err);
  }
  return Status::Ok();
}

// `out` bytes from the key source, as `kdf` says (scrypt with its salt, or the key file).
// kUnauthenticated when the source does not fit the kdf (a passphrase for a key file key).
Result<std::vector<uint8_t>> Derive(const json& kdf, const KeySource& key, size_t out) {
  try {
    const std::string type = kdf.at("type").get<std::string>();
    if (type == "keyfile") {
      if (key.key_file.empty()) return UnauthenticatedError("this key is a key file");
      VMBACKUP_ASSIGN_OR_RETURN(auto bytes, ReadKeyFile(key.key_file));
      bytes.resize(std::min(out, bytes.size()));
      return bytes;
    }
    if (type == "scrypt") {
      if (!key.passphrase) return UnauthenticatedError("this key is a passphrase");
      VMBACKUP_ASSIGN_OR_RETURN(auto salt, FromHex(kdf.at("salt").get<std::string>()));
      return Scrypt(*key.passphrase, salt, IntAt<uint64_t>(kdf, "n"), IntAt<uint64_t>(kdf, "r"),
                    IntAt<uint64_t>(kdf, "p"), out);
    }
    return CorruptionError("unknown kdf type '" + type + "'");
  } catch (const json::exception& e) {
    return CorruptionError(std::string("kdf: ") + e.what());
  }
}

std::vector<uint8_t> KeyAad(const std::string& repo_id) {
  std::string s = "vmbackup key " + repo_id;
  return {s.begin(), s.end()};
}

// A version 2 config's own key: the master key is the kdf's output, checked by key_check.
Result<std::vector<uint8_t>> UnlockLegacy(const json& config, const KeySource& key) {
  VMBACKUP_ASSIGN_OR_RETURN(auto bytes, Derive(config.at("kdf"), key, 64));
  VMBACKUP_ASSIGN_OR_RETURN(MasterKey mk, MasterKey::FromBytes(bytes));
  BlobCodec probe(mk);
  VMBACKUP_ASSIGN_OR_RETURN(auto check, FromHex(config.value("key_check", "")));
  auto plain = probe.Decode(check, Bytes(kKeyCheck), 32);
  const Id expected = Sha256(Bytes(kKeyCheck));
  if (!plain || plain->size() != 32 ||
      !std::equal(plain->begin(), plain->end(), expected.bytes.begin())) {
    return UnauthenticatedError("the config's key does not match");
  }
  return bytes;
}

Result<json> LoadKeyObject(storage::Backend& backend, const std::string& name) {
  VMBACKUP_ASSIGN_OR_RETURN(auto data, backend.Load({storage::ObjectType::kKey, name}));
  json j = json::parse(data.begin(), data.end(), nullptr, false);
  if (!j.is_object() || !j.contains("kdf") || !j["kdf"].is_object() || !j.contains("master") ||
      !j["master"].is_string()) {
    return CorruptionError("key " + name + " is not a key record");
  }
  return j;
}

}  // namespace

std::vector<uint8_t> NewMasterKey() { return RandomBytes(64); }

Result<std::string> AddKeyObject(storage::Backend& backend, const std::string& repo_id,
                                 std::span<const uint8_t> master, const KeySource& key) {
  json kdf;
  if (key.passphrase) {
    if (key.passphrase->empty()) return InvalidArgumentError("the passphrase is empty");
    kdf = {{"type", "scrypt"},
           {"n", kScryptN},
           {"r", kScryptR},
           {"p", kScryptP},
           {"salt", ToHex(RandomBytes(32))}};
  } else if (!key.key_file.empty()) {
    kdf = {{"type", "keyfile"}};
    if (::access(key.key_file.c_str(), F_OK) != 0)
      VMBACKUP_RETURN_IF_ERROR(WriteNewKeyFile(key.key_file, RandomBytes(64)));
  } else {
    return InvalidArgumentError("a new key needs a key file or a passphrase");
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto kek, Derive(kdf, key, 32));
  VMBACKUP_ASSIGN_OR_RETURN(auto sealed, AesGcmSeal(std::span<const uint8_t, 32>(kek.data(), 32),
                                                    master, KeyAad(repo_id)));
  const std::string name = ToHex(RandomBytes(16));
  json record = {{"version", 1},
                 {"created", UtcNowRfc3339()},
                 {"host", HostName()},
                 {"kdf", kdf},
                 {"master", ToHex(sealed)}};
  std::string text = record.dump(2) + "\n";
  VMBACKUP_RETURN_IF_ERROR(backend.Save({storage::ObjectType::kKey, name}, Bytes(text)));
  return name;
}

Result<std::vector<KeyInfo>> ListKeyObjects(storage::Backend& backend, const json& config) {
  std::vector<KeyInfo> out;
  if (config.contains("kdf") && config["kdf"].is_object()) {
    out.push_back({"config", config["kdf"].value("type", "?"), config.value("created", ""), ""});
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, backend.List(storage::ObjectType::kKey));
  std::vector<KeyInfo> keys;
  for (const auto& o : objects) {
    auto j = LoadKeyObject(backend, o.name);
    if (!j) {
      keys.push_back({o.name, "damaged", "", ""});
      continue;
    }
    keys.push_back(
        {o.name, (*j)["kdf"].value("type", "?"), j->value("created", ""), j->value("host", "")});
  }
  std::sort(keys.begin(), keys.end(),
            [](const KeyInfo& a, const KeyInfo& b) { return a.created < b.created; });
  out.insert(out.end(), keys.begin(), keys.end());
  return out;
}

Result<Unlocked> UnlockMasterKey(storage::Backend& backend, const json& config,
                                 const KeySource& key) {
  if (key.empty()) {
    return UnauthenticatedError(
        "the repository is encrypted: give its --key-file or passphrase (--passphrase-file, "
        "--password-command or VMBACKUP_PASSPHRASE)");
  }
  if (key.passphrase && key.passphrase->empty())
    return UnauthenticatedError("the passphrase is empty");
  const std::string repo_id = config.value("id", "");
  if (config.contains("kdf")) {
    auto legacy = UnlockLegacy(config, key);
    if (legacy) return Unlocked{std::move(*legacy), "config"};
    if (legacy.error().code() != ErrorCode::kUnauthenticated) return legacy.error();
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, backend.List(storage::ObjectType::kKey));
  std::sort(
      objects.begin(), objects.end(),
      [](const storage::ObjectInfo& a, const storage::ObjectInfo& b) { return a.name < b.name; });
  for (const auto& o : objects) {
    auto j = LoadKeyObject(backend, o.name);
    if (!j) continue;  // a damaged key object: another may still open the repository
    auto kek = Derive((*j)["kdf"], key, 32);
    if (!kek) {
      if (kek.error().code() == ErrorCode::kUnauthenticated) continue;  // another kind of key
      if (kek.error().code() == ErrorCode::kCorruption) continue;
      return kek.error();  // an unreadable key file
    }
    auto sealed = FromHex((*j)["master"].get<std::string>());
    if (!sealed || kek->size() != 32) continue;
    auto master =
        AesGcmOpen(std::span<const uint8_t, 32>(kek->data(), 32), *sealed, KeyAad(repo_id));
    if (master && master->size() == 64) return Unlocked{std::move(*master), o.name};
  }
  return UnauthenticatedError("wrong key for repository " + backend.location());
}

std::string ConfigMac(const MasterKey& key, const json& config) {
  json rest = config;
  rest.erase("config_mac");
  const std::string text = rest.dump();  // objects keep their keys sorted: one serialization
  return HmacSha256(key.id, Bytes(text)).Hex();
}

}  // namespace vmbackup::repo
