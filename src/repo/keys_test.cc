// Keys and the authenticated config: several keys per repository, key removal, version 2
// repositories whose key lives in the config, and configs altered to switch encryption off.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "repo/point.h"
#include "storage/mem_backend.h"
#include "storage/testing/forwarding_backend.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;
const storage::ObjectRef kConfig{storage::ObjectType::kConfig, "config"};

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

json LoadConfig(storage::Backend& b) {
  auto raw = b.Load(kConfig);
  EXPECT_TRUE(raw);
  return json::parse(raw->begin(), raw->end());
}

void ReplaceConfig(storage::Backend& b, const json& config) {
  std::string text = config.dump(2);
  ASSERT_TRUE(b.Delete(kConfig).ok());
  ASSERT_TRUE(b.Save(kConfig, Bytes(text)).ok());
}

Result<std::unique_ptr<Repository>> OpenWith(storage::MemBackend& b, const KeySource& k) {
  return Repository::Open(std::make_unique<storage::testing::ForwardingBackend>(b), k);
}

KeySource Passphrase(const std::string& p) { return {"", p}; }

Status StoreAPoint(Repository& repo) {
  Point meta;
  meta.vm_name = "vm";
  VMBACKUP_ASSIGN_OR_RETURN(auto w, PointWriter::Start(repo, meta));
  PointDisk d;
  d.key = 2000;
  d.capacity = 65536;
  VMBACKUP_ASSIGN_OR_RETURN(size_t i, w->AddDisk(d));
  std::vector<uint8_t> data(65536, 7);
  VMBACKUP_RETURN_IF_ERROR(w->WriteChunk(i, 0, data));
  return w->Commit().status();
}

TEST(Keys, SeveralPassphrasesOpenOneRepository) {
  storage::MemBackend b;
  InitOptions o;
  o.encrypt = true;
  o.key = Passphrase("first");
  ASSERT_TRUE(Repository::Init(b, o).ok());
  std::string second;
  {
    auto repo = OpenWith(b, Passphrase("first"));
    ASSERT_TRUE(repo) << repo.error().ToString();
    ASSERT_TRUE(StoreAPoint(**repo).ok());
    auto added = (*repo)->AddKey(Passphrase("second"));
    ASSERT_TRUE(added) << added.error().ToString();
    second = *added;
    auto keys = (*repo)->ListKeys();
    ASSERT_TRUE(keys);
    EXPECT_EQ(keys->size(), 2u);
    // The key that opened the repository cannot be removed through it.
    EXPECT_EQ((*repo)->RemoveKey((*repo)->key_name()).code(), ErrorCode::kFailedPrecondition);
    EXPECT_EQ((*repo)->RemoveKey("0123456789abcdef0123456789abcdef").code(), ErrorCode::kNotFound);
  }
  std::string first;
  {
    auto repo = OpenWith(b, Passphrase("second"));
    ASSERT_TRUE(repo) << repo.error().ToString();
    EXPECT_EQ((*repo)->key_name(), second);
    auto ids = ListPoints(**repo);
    ASSERT_TRUE(ids);
    ASSERT_EQ(ids->size(), 1u);
    EXPECT_TRUE(LoadPoint(**repo, (*ids)[0]));  // the same master key: the data reads
    auto keys = (*repo)->ListKeys();
    ASSERT_TRUE(keys);
    for (const auto& k : *keys)
      if (k.name != second) first = k.name;
    ASSERT_TRUE((*repo)->RemoveKey(first).ok());
  }
  auto old = OpenWith(b, Passphrase("first"));
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_TRUE(OpenWith(b, Passphrase("second")));
}

TEST(Keys, EmptyPassphrasesAreRefused) {
  storage::MemBackend b;
  InitOptions o;
  o.encrypt = true;
  o.key = Passphrase("");
  EXPECT_FALSE(Repository::Init(b, o).ok());
  EXPECT_FALSE(b.Load(kConfig));  // nothing written
  o.key = Passphrase("x");
  ASSERT_TRUE(Repository::Init(b, o).ok());
  auto empty = OpenWith(b, Passphrase(""));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::kUnauthenticated);
}

TEST(Keys, AnAlteredConfigIsRefused) {
  storage::MemBackend b;
  InitOptions o;
  o.encrypt = true;
  o.key = Passphrase("pw");
  ASSERT_TRUE(Repository::Init(b, o).ok());
  json config = LoadConfig(b);
  json altered = config;
  altered["chunk_size"] = 131072;
  ReplaceConfig(b, altered);
  auto r = OpenWith(b, Passphrase("pw"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  EXPECT_NE(r.error().message().find("altered"), std::string::npos);
  altered = config;
  altered.erase("config_mac");
  ReplaceConfig(b, altered);
  EXPECT_FALSE(OpenWith(b, Passphrase("pw")));
}

// Switching encryption off by editing the config: with the key given, the claim is refused; with
// no key, the encrypted objects in the repository give the edit away. Nothing is stored.
TEST(Keys, EncryptionCannotBeSwitchedOffByEditingTheConfig) {
  storage::MemBackend b;
  InitOptions o;
  o.encrypt = true;
  o.key = Passphrase("pw");
  ASSERT_TRUE(Repository::Init(b, o).ok());
  {
    auto repo = OpenWith(b, o.key);
    ASSERT_TRUE(repo);
    ASSERT_TRUE(StoreAPoint(**repo).ok());
  }
  json plain = LoadConfig(b);
  plain["encryption"] = "none";
  plain.erase("config_mac");
  ReplaceConfig(b, plain);
  auto with_key = OpenWith(b, o.key);
  ASSERT_FALSE(with_key);
  EXPECT_EQ(with_key.error().code(), ErrorCode::kUnauthenticated);
  auto without = OpenWith(b, {});
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().code(), ErrorCode::kCorruption);
  // Even with the key objects gone, the encrypted index and point records tell.
  auto keys = b.List(storage::ObjectType::kKey);
  for (const auto& k : *keys) ASSERT_TRUE(b.Delete({storage::ObjectType::kKey, k.name}).ok());
  without = OpenWith(b, {});
  ASSERT_FALSE(without);
  EXPECT_NE(without.error().message().find("refusing to store plaintext"), std::string::npos);
}

// A version 2 repository: the master key is the key file itself, checked by key_check in the
// config. It opens, takes a second key (a key object), and refuses to lose its config key.
TEST(Keys, VersionTwoConfigKey) {
  storage::MemBackend b;
  std::vector<uint8_t> master = RandomBytes(64);
  auto mk = MasterKey::FromBytes(master);
  ASSERT_TRUE(mk);
  BlobCodec codec(*mk);
  const std::string check_text = "vmbackup key check";
  Id check = Sha256(Bytes(check_text));
  json config = {{"format", "vmbackup-repository"},
                 {"version", 2},
                 {"id", ToHex(RandomBytes(16))},
                 {"chunk_size", 65536},
                 {"compression", "zstd"},
                 {"encryption", "aes-256-gcm"},
                 {"kdf", {{"type", "keyfile"}}},
                 {"key_check", ToHex(codec.Encode(check.bytes, Bytes(check_text), false))},
                 {"created", "2026-11-01T00:00:00Z"}};
  std::string text = config.dump();
  ASSERT_TRUE(b.Save(kConfig, Bytes(text)).ok());
  char name[] = "/tmp/vmbackup-keyfile-XXXXXX";
  int fd = ::mkstemp(name);
  ASSERT_GE(fd, 0);
  std::string hex = ToHex(master);
  ASSERT_EQ(::write(fd, hex.data(), hex.size()), ssize_t(hex.size()));
  ::close(fd);
  KeySource file{name, std::nullopt};
  {
    auto repo = OpenWith(b, file);
    ASSERT_TRUE(repo) << repo.error().ToString();
    EXPECT_EQ((*repo)->key_name(), "config");
    EXPECT_EQ((*repo)->version(), 2);
    ASSERT_TRUE(StoreAPoint(**repo).ok());
    ASSERT_TRUE((*repo)->AddKey(Passphrase("later")));
  }
  auto repo = OpenWith(b, Passphrase("later"));
  ASSERT_TRUE(repo) << repo.error().ToString();
  EXPECT_EQ((*repo)->RemoveKey("config").code(), ErrorCode::kFailedPrecondition);
  ::unlink(name);
}

TEST(Keys, AConfigFieldOfTheWrongTypeIsCorruptionNotACrash) {
  storage::MemBackend b;
  ASSERT_TRUE(Repository::Init(b, {}).ok());
  json config = LoadConfig(b);
  config["version"] = "three";
  ReplaceConfig(b, config);
  auto r = OpenWith(b, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  EXPECT_NE(r.error().message().find("wrong type"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace vmbackup::repo
