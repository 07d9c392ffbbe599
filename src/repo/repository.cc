#include "repo/repository.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/strings.h"
#include "repo/json_fields.h"
#include "repo/keys.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

const storage::ObjectRef kConfigRef{storage::ObjectType::kConfig, "config"};

std::span<const uint8_t> Text(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Result<ObjectLockPolicy> ObjectLockOf(const json& j) {
  ObjectLockPolicy p;
  const std::string mode = j.is_object() ? j.value("mode", "") : "";
  if (mode != "governance" && mode != "compliance")
    return CorruptionError("config: object_lock.mode is neither governance nor compliance");
  p.mode = mode == "compliance" ? storage::LockMode::kCompliance : storage::LockMode::kGovernance;
  const auto seconds = j.find("seconds");
  if (seconds == j.end() || !seconds->is_number_integer() || seconds->get<int64_t>() <= 0 ||
      seconds->get<int64_t>() > (int64_t(100) * 365 * 86400))
    return CorruptionError("config: object_lock.seconds is not a positive number of seconds");
  p.seconds = seconds->get<int64_t>();
  return p;
}

bool ValidChunkSize(uint64_t c) { return c >= 4096 && c <= (4u << 20) && (c & (c - 1)) == 0; }

// True when the stored object starts with a blob whose flags say "encrypted" (an index file
// after its magic, a point record at once).
// A damaged object (garbage) must not pass for an encrypted one: only the flag bits a blob may
// have, "encrypted" without "checksummed", and room for a nonce and a tag.
bool LooksEncrypted(const std::vector<uint8_t>& data, size_t blob_at) {
  if (data.size() < blob_at + 1 + kGcmNonceSize + kGcmTagSize) return false;
  const uint8_t flags = data[blob_at];
  return (flags & ~uint8_t(kBlobCompressed | kBlobEncrypted)) == 0 && (flags & kBlobEncrypted);
}

// A config that says "unencrypted" must describe a repository with nothing encrypted in it:
// otherwise someone switched encryption off by editing it (the config of an encrypted
// repository is authenticated, but an attacker can remove that too).
Status CheckReallyPlain(storage::Backend& backend) {
  VMBACKUP_ASSIGN_OR_RETURN(auto keys, backend.List(storage::ObjectType::kKey));
  const std::string tampered =
      "the config says the repository is unencrypted, but it holds encrypted ";
  if (!keys.empty()) return CorruptionError(tampered + "keys: refusing to store plaintext");
  for (auto [type, blob_at] : {std::pair{storage::ObjectType::kIndex, size_t(8)},
                               std::pair{storage::ObjectType::kPoint, size_t(0)}}) {
    VMBACKUP_ASSIGN_OR_RETURN(auto objects, backend.List(type));
    for (size_t i = 0; i < objects.size() && i < 2; ++i) {
      // The head says it all (an index file is as large as the index: megabytes); an object
      // too small to hold an encrypted blob is none.
      const uint64_t head = blob_at + 1 + kGcmNonceSize + kGcmTagSize;
      if (objects[i].size < head) continue;
      auto data = backend.LoadRange({type, objects[i].name}, 0, head);
      if (data && LooksEncrypted(*data, blob_at)) {
        return CorruptionError(tampered + std::string(storage::ObjectTypeName(type)) +
                               ": refusing to store plaintext");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Status Repository::Init(storage::Backend& backend, const InitOptions& o) {
  if (!ValidChunkSize(o.chunk_size)) {
    return InvalidArgumentError("chunk size must be a power of two from 4K to 4M");
  }
  json config = {{"format", "vmbackup-repository"}, {"version", kFormatVersion},
                 {"id", ToHex(RandomBytes(16))},    {"chunk_size", o.chunk_size},
                 {"compression", "zstd"},           {"created", UtcNowRfc3339()}};
  if (o.object_lock.seconds > 0) {
    // Before the key and the config: they are locked too.
    VMBACKUP_RETURN_IF_ERROR(
        backend.LockNewObjects(o.object_lock.mode, o.object_lock.seconds_for_new()));
    config["object_lock"] = {
        {"mode",
         o.object_lock.mode == storage::LockMode::kCompliance ? "compliance" : "governance"},
        {"seconds", o.object_lock.seconds}};
  }
  if (!o.encrypt) {
    if (!o.key.empty()) return InvalidArgumentError("a key was given without --encrypt");
    config["encryption"] = "none";
  } else {
    if (o.key.empty())
      return InvalidArgumentError("--encrypt needs --key-file FILE or a passphrase");
    config["encryption"] = "aes-256-gcm";
    // The key object first: a config without a key would be a repository nobody can open.
    const std::vector<uint8_t> master = NewMasterKey();
    VMBACKUP_RETURN_IF_ERROR(
        AddKeyObject(backend, config["id"].get<std::string>(), master, o.key).status());
    VMBACKUP_ASSIGN_OR_RETURN(MasterKey key, MasterKey::FromBytes(master));
    config["config_mac"] = ConfigMac(key, config);
  }
  std::string text = config.dump(2) + "\n";
  return backend.Save(kConfigRef, Text(text));
}

Result<std::unique_ptr<Repository>> Repository::Open(std::unique_ptr<storage::Backend> backend,
                                                     const KeySource& key) {
  auto raw = backend->Load(kConfigRef);
  if (!raw) {
    if (raw.error().code() == ErrorCode::kNotFound) {
      return NoRepositoryError(backend->location() + " is not a vmbackup repository (no config)");
    }
    return raw.error();
  }
  json config = json::parse(raw->begin(), raw->end(), nullptr, false);
  if (config.is_discarded() || !config.is_object()) return CorruptionError("config is not JSON");
  int version = 0;
  uint64_t chunk_size = 0;
  std::string encryption, repo_id;
  try {
    if (config.value("format", "") != "vmbackup-repository")
      return CorruptionError("config: not a vmbackup repository");
    version = IntAt<int>(config, "version");
    chunk_size = IntAt<uint64_t>(config, "chunk_size");
    encryption = config.at("encryption").get<std::string>();
    repo_id = config.at("id").get<std::string>();
  } catch (const json::exception& e) {
    return CorruptionError(std::string("config: a field is missing or of the wrong type (") +
                           e.what() + ")");
  }
  if (version < 1 || version > kFormatVersion) {
    return NotSupportedError(
        StrFormat("repository format version %d (this vmbackup reads versions 1 to %d)", version,
                  kFormatVersion));
  }
  if (!ValidChunkSize(chunk_size)) return CorruptionError("config: bad chunk_size");
  std::optional<MasterKey> master;
  std::vector<uint8_t> master_bytes;
  std::string key_name;
  if (encryption == "aes-256-gcm") {
    VMBACKUP_ASSIGN_OR_RETURN(Unlocked u, UnlockMasterKey(*backend, config, key));
    VMBACKUP_ASSIGN_OR_RETURN(master, MasterKey::FromBytes(u.master));
    master_bytes = std::move(u.master);
    key_name = u.key_name;
    // Version 3 configs are authenticated; a version 2 one is bound to the key by key_check.
    const bool has_mac = config.contains("config_mac");
    if ((version >= 3 || has_mac) &&
        (!has_mac || !config["config_mac"].is_string() ||
         config["config_mac"].get<std::string>() != ConfigMac(*master, config))) {
      return CorruptionError("config: its authentication code does not match: it was altered");
    }
  } else if (encryption == "none") {
    if (!key.empty()) {
      return UnauthenticatedError(
          "a key was given, but the config of " + backend->location() +
          " says it is not encrypted: refusing (if it was encrypted, its config was altered)");
    }
    VMBACKUP_RETURN_IF_ERROR(CheckReallyPlain(*backend));
  } else {
    return NotSupportedError("config: unknown encryption '" + encryption + "'");
  }
  // Version 1 readers know no checksum flag: a version 1 repository gets version 1 blobs.
  std::unique_ptr<Repository> repo(
      new Repository(std::move(backend), BlobCodec(master, /*checksums=*/version >= 2)));
  repo->id_ = repo_id;
  repo->version_ = version;
  repo->chunk_size_ = chunk_size;
  if (repo->config_ = std::move(config); repo->config_.contains("object_lock")) {
    VMBACKUP_ASSIGN_OR_RETURN(repo->object_lock_, ObjectLockOf(repo->config_["object_lock"]));
    // A copy of the repository in a store without Object Lock (a folder) is read all the same.
    Status s = repo->backend_->LockNewObjects(repo->object_lock_.mode,
                                              repo->object_lock_.seconds_for_new());
    if (!s.ok() && s.code() != ErrorCode::kNotSupported) return s;
  }
  repo->master_bytes_ = std::move(master_bytes);
  repo->key_name_ = key_name;
  VMBACKUP_RETURN_IF_ERROR(repo->LoadDamage());
  // The index files are listed here (an unreadable folder fails Open) and read on a thread:
  // a backup takes its snapshot meanwhile (11 ms of a 16,500-entry index off its start).
  VMBACKUP_ASSIGN_OR_RETURN(auto files, repo->backend_->List(storage::ObjectType::kIndex));
  repo->index_loaded_ = std::async(std::launch::async, [r = repo.get(), files = std::move(files)] {
                          r->LoadIndex(files);
                        }).share();
  return repo;
}

Result<std::vector<KeyInfo>> Repository::ListKeys() {
  if (!encrypted()) return FailedPreconditionError("the repository is not encrypted");
  return ListKeyObjects(*backend_, config_);
}

Result<std::string> Repository::AddKey(const KeySource& key) {
  if (!encrypted()) return FailedPreconditionError("the repository is not encrypted");
  return AddKeyObject(*backend_, id_, master_bytes_, key);
}

Result<std::string> Repository::ChangeKey(const KeySource& key) {
  if (!encrypted()) return FailedPreconditionError("the repository is not encrypted");
  if (key_name_ == "config") {
    return FailedPreconditionError(
        "the key that opened this repository lives in its config (format version 2) and cannot "
        "be changed: add a key with 'vmbackup key add' and use that one");
  }
  VMBACKUP_ASSIGN_OR_RETURN(std::string added, AddKey(key));
  VMBACKUP_RETURN_IF_ERROR(
      backend_->Delete({storage::ObjectType::kKey, key_name_})
          .WithContext("the new key " + added + " was added, but removing " + key_name_));
  key_name_ = added;
  return added;
}

Status Repository::RemoveKey(const std::string& name) {
  if (!encrypted()) return FailedPreconditionError("the repository is not encrypted");
  if (name == "config") {
    return FailedPreconditionError(
        "the first key of a format version 2 repository lives in its config and cannot be "
        "removed");
  }
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(name));
  if (name == key_name_) {
    return FailedPreconditionError("key " + name +
                                   " is the one that opened the repository: open it with "
                                   "another key to remove this one");
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto keys, ListKeys());
  bool found = false;
  for (const auto& k : keys) found = found || k.name == name;
  if (!found) return NotFoundError("no key " + name);
  return backend_->Delete({storage::ObjectType::kKey, name});
}

void Repository::LoadIndex(const std::vector<storage::ObjectInfo>& files) {
  for (const auto& f : files) {
    auto data = backend_->Load({storage::ObjectType::kIndex, f.name});
    const bool named_right = data && Sha256(*data).Hex() == f.name;
    Result<Index::FileEntries> entries =
        data ? Index::DecodeEntries(codec_, std::move(*data)) : data.error();
    if (!entries || !named_right) {
      // A damaged index file must not lock users out of everything else: its blobs read as
      // missing until `check` has reported it and the index is rebuilt from the packs.
      damaged_index_files_.push_back(f.name);
      index_problems_.push_back(
          "index " + f.name + ": " +
          (entries ? std::string("content does not match its name") : entries.error().message()));
      continue;
    }
    Index::KeepFn keep;  // all, unless damage records name copies
    if (std::lock_guard<std::mutex> l(damage_mu_); !damaged_copies_.empty()) {
      keep = [this](const PackEntry& e) {
        if (!IsDamagedCopy(e.id, e.loc.pack)) return true;
        std::lock_guard<std::mutex> held(damage_mu_);
        damaged_.emplace(e.id, "recorded as damaged in pack " + e.loc.pack.Hex());
        return false;
      };
    }
    index_.AddAll(std::move(*entries), keep);
  }
  // A good copy elsewhere makes a blob whole again.
  std::lock_guard<std::mutex> l(damage_mu_);
  for (auto it = damaged_.begin(); it != damaged_.end();) {
    it = index_.Find(it->first) ? damaged_.erase(it) : std::next(it);
  }
}

namespace {
constexpr size_t kPackPrefix = 32;  // hex digits of the pack id in a damage record's name
std::vector<uint8_t> DamageAad(const std::string& name) {
  std::string s = "vmbackup damage " + name;
  return {s.begin(), s.end()};
}
}  // namespace

Status Repository::LoadDamage() {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, backend_->List(storage::ObjectType::kDamage));
  std::lock_guard<std::mutex> l(damage_mu_);
  for (const auto& o : objects) {
    if (o.name.size() != 64 + 1 + kPackPrefix || o.name[64] != '-') continue;
    auto id = Id::FromHex(o.name.substr(0, 64));
    if (id) damaged_copies_.insert({*id, o.name.substr(65)});
  }
  return Status::Ok();
}

bool Repository::IsDamagedCopy(const Id& id, const Id& pack) const {
  std::lock_guard<std::mutex> l(damage_mu_);
  return !damaged_copies_.empty() &&
         damaged_copies_.count({id, pack.Hex().substr(0, kPackPrefix)}) != 0;
}

bool Repository::IsDamaged(const Id& id) const {
  AwaitIndex();
  std::lock_guard<std::mutex> l(damage_mu_);
  return damaged_.count(id) != 0;
}

bool Repository::HasDamage() const {
  AwaitIndex();
  std::lock_guard<std::mutex> l(damage_mu_);
  return !damaged_.empty();
}

void Repository::RecordDamage(BlobType type, const Id& id, const std::string& error) {
  AwaitIndex();
  std::optional<BlobLocation> loc = index_.Find(id);
  if (!loc) return;
  const std::string name = id.Hex() + "-" + loc->pack.Hex().substr(0, kPackPrefix);
  {
    std::lock_guard<std::mutex> l(damage_mu_);
    if (!damaged_copies_.insert({id, name.substr(65)}).second) return;
    damaged_[id] = error;
  }
  // Out of the index: the next backup that produces this blob stores a good copy.
  index_.Remove(id);
  std::string text =
      nlohmann::json{
          {"blob", id.Hex()},        {"type", type == BlobType::kChunk ? "chunk" : "tree"},
          {"pack", loc->pack.Hex()}, {"offset", loc->offset},
          {"error", error},          {"time", UtcNowRfc3339()}}
          .dump();
  std::vector<uint8_t> blob = codec_.Encode(Text(text), DamageAad(name));
  // Best effort: a read-only repository cannot keep the record (verify says so in its report).
  backend_->Save({storage::ObjectType::kDamage, name}, blob).IgnoreError();
}

Status Repository::MissingBlob(const Id& id) const {
  AwaitIndex();
  {
    std::lock_guard<std::mutex> l(damage_mu_);
    auto it = damaged_.find(id);
    if (it != damaged_.end()) {
      return CorruptionError("blob " + id.Hex() + " is damaged (" + it->second +
                             "); no good copy exists yet: the next backup that reads the same "
                             "data stores one");
    }
  }
  return NotFoundError("blob " + id.Hex() +
                       " is not in the index (if an index file was lost or damaged, "
                       "'vmbackup check --repair' lists its packs again)");
}

bool Repository::Has(const Id& id) const {
  AwaitIndex();
  if (index_.Find(id)) return true;
  std::lock_guard<std::mutex> l(mu_);
  return pending_.count(id) != 0;
}

namespace {
uint64_t NowNs() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}
}  // namespace

Result<Id> Repository::Store(BlobType type, std::span<const uint8_t> plaintext, bool* is_new) {
  const uint64_t t0 = NowNs();
  Id id = codec_.IdOf(plaintext);
  const uint64_t t1 = NowNs();
  hash_ns_ += t1 - t0;
  if (Has(id)) {
    if (is_new) *is_new = false;
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.blobs_deduplicated;
    return id;
  }
  // Encoding (compression, encryption) runs outside the lock.
  EncodedBlob stored = codec_.EncodeParts(plaintext, BlobAad(type, id));
  encode_ns_ += NowNs() - t1;
  std::unique_lock<std::mutex> l(mu_);
  if (!pending_.insert(id).second) {  // another thread stored it meanwhile
    if (is_new) *is_new = false;
    ++stats_.blobs_deduplicated;
    return id;
  }
  builder_.Add(type, id, stored, uint32_t(plaintext.size()));
  ++stats_.blobs_stored;
  stats_.bytes_raw_stored += plaintext.size();
  stats_.bytes_packed += stored.size();
  if (is_new) *is_new = true;
  // Add may have queued segments of the pack (streaming_): they count against the room too.
  VMBACKUP_RETURN_IF_ERROR(builder_.bytes() >= kPackTarget ? SavePack(l) : WaitForRoom(l));
  return id;
}

Repository::Repository(std::unique_ptr<storage::Backend> b, BlobCodec codec)
    : backend_(std::move(b)), codec_(std::move(codec)), builder_(codec_) {
  if (!streaming_) {
    builder_.Reserve(kPackTarget + (1 << 20));
    return;
  }
  builder_.StreamSegments(kSegment, [this](AlignedBuffer&& segment) {
    PackBuilder::Finished piece;
    piece.bytes = std::move(segment);
    piece.whole = piece.last = false;
    Enqueue(std::move(piece));
  });
}

Status Repository::SavePack(std::unique_lock<std::mutex>& lock) {
  if (builder_.count() == 0) return save_error_;
  Enqueue(builder_.Finish());
  return WaitForRoom(lock);
}

void Repository::Enqueue(PackBuilder::Finished f) {
  queued_.push_back(std::move(f));
  ++saves_in_flight_;
  // Streamed pieces must reach the disk in order: one writer then.
  const int writers = streaming_ ? 1 : std::max(1, backend_->SavesInFlight());
  if (pack_writers_.size() < size_t(writers) && saves_in_flight_ > int(pack_writers_.size()))
    pack_writers_.emplace_back([this] { PackWriterMain(); });
  queued_cv_.notify_one();
}

Status Repository::WaitForRoom(std::unique_lock<std::mutex>& lock) {
  const int most = streaming_ ? kMaxPieces : kMaxQueuedPacks + int(pack_writers_.size()) - 1;
  saved_.wait(lock, [&] { return saves_in_flight_ <= most; });
  return save_error_;
}

void Repository::PackWriterMain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    queued_cv_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
    if (queued_.empty()) return;  // stopping, and every queued pack written
    PackBuilder::Finished f = std::move(queued_.front());
    queued_.pop_front();
    WritePack(std::move(f), lock);
  }
}

void Repository::WritePack(PackBuilder::Finished f, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  const uint64_t t0 = NowNs();
  Status s = SavePackObject(f);
  pack_write_ns_ += NowNs() - t0;
  lock.lock();
  --saves_in_flight_;
  builder_.Recycle(std::move(f.bytes));
  if (!f.last) {  // a segment: its blobs are recorded with the pack's last piece
    if (!s.ok() && save_error_.ok()) save_error_ = s;
  } else if (s.ok()) {
    unindexed_.insert(unindexed_.end(), f.entries.begin(), f.entries.end());
  } else if (save_error_.ok()) {
    save_error_ = s;  // the blobs of a lost pack must not be indexed: Flush reports it
  }
  saved_.notify_all();
}

bool Repository::IsDamage(const Status& s) {
  // Bytes that fail their checks, or a pack that is gone; not an I/O error that may pass.
  return s.code() == ErrorCode::kCorruption || s.code() == ErrorCode::kNotFound;
}

Status Repository::SavePackObject(const PackBuilder::Finished& f) {
  Status s = f.whole ? SavePackBytes(f) : StreamPackPiece(f);
  if (!s.ok() || !f.last) return s;
  // A pack written now under a name that damage records name (the same blobs make the same
  // pack: a missing pack comes back this way) is good: its copies are no longer damaged.
  for (const PackEntry& e : f.entries) {
    if (!IsDamagedCopy(e.id, f.id)) continue;
    const std::string tail = f.id.Hex().substr(0, kPackPrefix);
    {
      std::lock_guard<std::mutex> l(damage_mu_);
      damaged_copies_.erase({e.id, tail});
    }
    backend_->Delete({storage::ObjectType::kDamage, e.id.Hex() + "-" + tail}).IgnoreError();
  }
  return Status::Ok();
}

Status Repository::SavePackBytes(const PackBuilder::Finished& f) {
  const storage::ObjectRef ref{storage::ObjectType::kPack, f.id.Hex()};
  Status s = backend_->Save(ref, f.bytes);
  if (s.code() != ErrorCode::kAlreadyExists) return s;
  // The same blobs in the same order make the same pack (its name is the hash of its trailer):
  // a killed backup's pack, say. Identical bytes will do. Different ones can only be a damaged
  // copy (encrypted packs never repeat: nonces are random), which the good one replaces.
  auto existing = backend_->Load(ref);
  if (existing && std::equal(existing->begin(), existing->end(), f.bytes.begin(), f.bytes.end()))
    return Status::Ok();
  VMBACKUP_RETURN_IF_ERROR(backend_->Delete(ref).WithContext("replace damaged pack " + ref.name));
  return backend_->Save(ref, f.bytes);
}

Status Repository::StreamPackPiece(const PackBuilder::Finished& f) {
  if (!pack_stream_ && pack_stream_error_.ok()) {
    auto w = backend_->NewWriter(storage::ObjectType::kPack);
    if (w) {
      pack_stream_ = std::move(*w);
    } else {
      pack_stream_error_ = w.error();
    }
  }
  if (pack_stream_error_.ok()) pack_stream_error_ = pack_stream_->Append(f.bytes);
  if (!f.last) return pack_stream_error_;
  // The pack's last piece: commit it, or drop what was written of it (the writer removes it).
  std::unique_ptr<storage::ObjectWriter> w = std::move(pack_stream_);
  Status s = std::exchange(pack_stream_error_, Status::Ok());
  if (!s.ok()) return s;
  const std::string name = f.id.Hex();
  s = w->Commit(name);
  if (s.code() != ErrorCode::kAlreadyExists) return s;
  // As in SavePackBytes: the same bytes will do; different ones are a damaged copy.
  VMBACKUP_ASSIGN_OR_RETURN(bool same, w->SameAsExisting());
  if (same) return Status::Ok();
  return w->ReplaceExisting().WithContext("replace damaged pack " + name);
}

Repository::~Repository() {
  if (index_loaded_.valid()) index_loaded_.wait();
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_all();
  for (std::thread& t : pack_writers_) t.join();
}

Status Repository::SealPack() {
  std::unique_lock<std::mutex> l(mu_);
  if (builder_.count() > 0) Enqueue(builder_.Finish());
  return save_error_;
}

Status Repository::Flush() {
  AwaitIndex();
  std::unique_lock<std::mutex> l(mu_);
  // The open pack is written here rather than queued: a tree writer reading back a page it
  // stored flushes often, and a hand-off to the writer thread for each cost more than the write.
  // Not while other packs are being written (a sealed one): the store's limit holds.
  if (builder_.count() > 0) {
    PackBuilder::Finished f = builder_.Finish();
    if (f.whole && saves_in_flight_ == 0) {
      ++saves_in_flight_;
      WritePack(std::move(f), l);
    } else {
      Enqueue(std::move(f));  // after its segments (or the others), by the writer threads
    }
  }
  saved_.wait(l, [&] { return saves_in_flight_ == 0; });
  VMBACKUP_RETURN_IF_ERROR(save_error_);
  if (unindexed_.empty()) return Status::Ok();
  std::vector<uint8_t> file = Index::EncodeFile(codec_, unindexed_);
  Status s = backend_->Save({storage::ObjectType::kIndex, Sha256(file).Hex()}, file);
  if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
  for (const PackEntry& e : unindexed_) {
    index_.Add(e.id, e.loc);
    pending_.erase(e.id);
  }
  unindexed_.clear();
  return Status::Ok();
}

Result<std::vector<uint8_t>> Repository::Load(BlobType type, const Id& id) {
  AwaitIndex();
  std::optional<BlobLocation> loc = index_.Find(id);
  if (!loc) {
    if (Has(id)) return InternalError("blob " + id.Hex() + " is stored but not flushed yet");
    return MissingBlob(id);
  }
  if (loc->type != type)
    return CorruptionError("blob " + id.Hex() + " has the wrong type in the index");
  auto context = [&](const Status& s) {
    return s.WithContext(StrFormat("blob %s in pack %s at %llu", id.Hex().c_str(),
                                   loc->pack.Hex().c_str(), (unsigned long long)loc->offset));
  };
  auto damage = [&](const Status& s) {
    Status err = context(s);
    if (IsDamage(err)) RecordDamage(type, id, err.message());
    return err;
  };
  auto stored = backend_->LoadRange({storage::ObjectType::kPack, loc->pack.Hex()}, loc->offset,
                                    loc->stored_length);
  if (!stored) return damage(stored.error());
  auto plain = codec_.Decode(*stored, BlobAad(type, id), loc->raw_length);
  if (!plain) return damage(plain.error());
  if (plain->size() != loc->raw_length || codec_.IdOf(*plain) != id) {
    return damage(CorruptionError("content does not match its id"));
  }
  return plain;
}

void Repository::Prefetch(std::span<const Id> ids) {
  AwaitIndex();
  std::vector<BlobLocation> locs;
  locs.reserve(ids.size());
  for (const Id& id : ids) {
    if (std::optional<BlobLocation> loc = index_.Find(id)) locs.push_back(*loc);
  }
  std::sort(locs.begin(), locs.end(), [](const BlobLocation& a, const BlobLocation& b) {
    return a.pack != b.pack ? a.pack < b.pack : a.offset < b.offset;
  });
  constexpr uint64_t kGap = 1 << 20;
  for (size_t a = 0; a < locs.size();) {
    uint64_t end = locs[a].offset + locs[a].stored_length;
    size_t b = a + 1;
    for (; b < locs.size() && locs[b].pack == locs[a].pack && locs[b].offset <= end + kGap; ++b)
      end = std::max(end, locs[b].offset + locs[b].stored_length);
    backend_->Prefetch({storage::ObjectType::kPack, locs[a].pack.Hex()}, locs[a].offset,
                       end - locs[a].offset);
    a = b;
  }
}

Status Repository::LoadInto(BlobType type, std::span<const Id> ids,
                            std::span<const std::span<uint8_t>> outs) {
  AwaitIndex();
  if (ids.size() != outs.size()) return InvalidArgumentError("LoadInto: one buffer per id");
  struct Item {
    size_t index;
    BlobLocation loc;
  };
  std::vector<Item> items;
  items.reserve(ids.size());
  std::vector<BlobLocation> locs(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    std::optional<BlobLocation> loc = index_.Find(ids[i]);
    if (!loc || loc->type != type) return Load(type, ids[i]).status();  // the precise error
    items.push_back({i, *loc});
    locs[i] = *loc;
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.loc.pack != b.loc.pack ? a.loc.pack < b.loc.pack : a.loc.offset < b.loc.offset;
  });
  // A deduplicated disk names one blob many times (a repeated pattern, a template's blocks):
  // each stored blob is read and decoded once, and copied to the other buffers that want it.
  // `blobs[u]` is items[blobs[u].first, blobs[u].last), all at one location.
  struct Same {
    size_t first, last;
  };
  std::vector<Same> blobs;
  for (size_t a = 0; a < items.size();) {
    size_t b = a + 1;
    while (b < items.size() && items[b].loc.pack == items[a].loc.pack &&
           items[b].loc.offset == items[a].loc.offset)
      ++b;
    blobs.push_back({a, b});
    a = b;
  }
  // Runs of adjacent blobs (at most 8 MiB each) are read with one request each, into a buffer
  // each thread keeps; the thread then decodes the run's blobs into their buffers. Blobs apart
  // by at most the backend's CoalesceGap join a run too (a remote store: the gap's bytes cost
  // less than another request).
  struct Run {
    size_t first, last;  // blobs[first, last)
  };
  std::vector<Run> runs;
  constexpr uint64_t kMaxRun = 8 << 20;
  const uint64_t gap = backend_->CoalesceGap();
  auto loc_of = [&](size_t u) -> const BlobLocation& { return items[blobs[u].first].loc; };
  for (size_t a = 0; a < blobs.size();) {
    size_t b = a + 1;
    uint64_t end = loc_of(a).offset + loc_of(a).stored_length;
    while (b < blobs.size() && loc_of(b).pack == loc_of(a).pack && loc_of(b).offset >= end &&
           loc_of(b).offset - end <= gap &&
           loc_of(b).offset + loc_of(b).stored_length - loc_of(a).offset <= kMaxRun) {
      end = loc_of(b).offset + loc_of(b).stored_length;
      ++b;
    }
    runs.push_back({a, b});
    a = b;
  }
  std::vector<Status> errors(ids.size());
  workers_.ParallelFor(runs.size(), [&](size_t r) {
    thread_local std::vector<uint8_t> buffer;
    const BlobLocation& head = loc_of(runs[r].first);
    const BlobLocation& tail = loc_of(runs[r].last - 1);
    const uint64_t length = tail.offset + tail.stored_length - head.offset;
    if (buffer.size() < length) buffer.resize(length);
    Status read = backend_->ReadRange({storage::ObjectType::kPack, head.pack.Hex()}, head.offset,
                                      {buffer.data(), length});
    for (size_t u = runs[r].first; u < runs[r].last; ++u) {
      const BlobLocation& loc = loc_of(u);
      const size_t i = items[blobs[u].first].index;
      if (!read.ok()) {
        errors[i] = read;
      } else if (outs[i].size() != loc.raw_length) {
        errors[i] = CorruptionError(StrFormat("the index says %u bytes, %zu were expected",
                                              loc.raw_length, outs[i].size()));
      } else {
        std::span<const uint8_t> stored(buffer.data() + (loc.offset - head.offset),
                                        loc.stored_length);
        bool bound = false;  // a checksum or a GCM tag tied the plaintext to its id
        errors[i] = codec_.DecodeInto(stored, BlobAad(type, ids[i]), outs[i], &bound);
        if (errors[i].ok() && !bound && codec_.IdOf(outs[i]) != ids[i])
          errors[i] = CorruptionError("content does not match its id");
      }
      for (size_t k = blobs[u].first + 1; k < blobs[u].last; ++k) {
        const size_t j = items[k].index;
        if (!errors[i].ok()) {
          errors[j] = errors[i];
          continue;
        }
        if (ids[j] != ids[i]) {
          errors[j] = CorruptionError("the index puts two blobs at one place");
          continue;
        }
        if (outs[j].size() != loc.raw_length) {
          errors[j] = CorruptionError(StrFormat("the index says %u bytes, %zu were expected",
                                                loc.raw_length, outs[j].size()));
          continue;
        }
        std::memcpy(outs[j].data(), outs[i].data(), outs[i].size());
      }
    }
  });
  Status first;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (errors[i].ok()) continue;
    Status s = errors[i].WithContext(StrFormat("blob %s in pack %s at %llu", ids[i].Hex().c_str(),
                                               locs[i].pack.Hex().c_str(),
                                               (unsigned long long)locs[i].offset));
    if (IsDamage(s)) RecordDamage(type, ids[i], s.message());
    if (first.ok()) first = s;
  }
  return first;
}

RepoStats Repository::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  RepoStats s = stats_;
  s.hash_ns = hash_ns_;
  s.encode_ns = encode_ns_;
  s.pack_write_ns = pack_write_ns_;
  return s;
}

}  // namespace vmbackup::repo
