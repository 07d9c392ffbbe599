// Keys of an encrypted repository (docs/repository-format.md section 2a).
//
// The data is encrypted under one random 64-byte master key that never changes. Each key object
// `keys/<name>` holds that master key sealed (AES-256-GCM) under a key-encryption key derived
// from one passphrase (scrypt) or one key file, so passphrases and key files can be added,
// changed and removed without re-encrypting anything (restic's scheme). Format version 2
// repositories derived the master key itself from the config's `kdf`; they still open that way,
// and can be given key objects too.
//
// The config of an encrypted repository is authenticated: `config_mac` is an HMAC with the id
// key over the rest of it, so it cannot be edited (switching encryption off among others).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "repo/blob_codec.h"
#include "storage/backend.h"

namespace vmbackup::repo {

// What the user gave to open or create an encrypted repository: a key file, or a passphrase.
struct KeySource {
  std::string key_file;  // 64 bytes as 128 hex digits; created by Init when missing
  std::optional<std::string> passphrase;  // scrypt
  bool empty() const { return key_file.empty() && !passphrase; }
};

struct KeyInfo {
  std::string name;     // the object's name; "config" for a version 2 repository's own key
  std::string type;     // "scrypt" or "keyfile"
  std::string created;  // RFC 3339
  std::string host;     // where it was added
};

// 64 random bytes for a new master key.
std::vector<uint8_t> NewMasterKey();

// Seals `master` under `key` into a new key object; returns its name. A key file that does
// not exist is created (64 random bytes, mode 0600).
Result<std::string> AddKeyObject(storage::Backend& backend, const std::string& repo_id,
                                 std::span<const uint8_t> master, const KeySource& key);

// Every key object, oldest first (plus, for version 2, the config's key).
Result<std::vector<KeyInfo>> ListKeyObjects(storage::Backend& backend,
                                            const nlohmann::json& config);

// The master key and the name of the key that opened it (a key object's, or "config").
// kUnauthenticated when no key was given or none matches.
struct Unlocked {
  std::vector<uint8_t> master;
  std::string key_name;
};
Result<Unlocked> UnlockMasterKey(storage::Backend& backend, const nlohmann::json& config,
                                 const KeySource& key);

// The config's authentication code: HMAC-SHA256 with the id key over the config without its
// `config_mac` field, serialized with sorted keys and no spaces.
std::string ConfigMac(const MasterKey& key, const nlohmann::json& config);

}  // namespace vmbackup::repo
