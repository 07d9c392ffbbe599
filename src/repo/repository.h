// Repository: the content-addressed store of a backup repository (docs/repository-format.md).
// It keeps blobs (chunks and tree pages) in packs, finds them through the index, and stores
// restore points. Blobs are deduplicated by id; Flush() makes everything stored so far durable
// in commit order (packs, then the index files that cover them). Thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/worker_pool.h"
#include "repo/blob_codec.h"
#include "repo/index.h"
#include "repo/keys.h"
#include "repo/pack.h"
#include "storage/backend.h"

namespace vmbackup::repo {

// Object Lock (docs/repository-format.md section 2): every object a restore point needs stays
// locked for at least `seconds` after the point is made. 0: none.
struct ObjectLockPolicy {
  storage::LockMode mode = storage::LockMode::kGovernance;
  int64_t seconds = 0;
  // New objects are locked a quarter longer than asked, so that the next points (for that
  // quarter) find what they reuse locked long enough already and extend nothing.
  int64_t seconds_for_new() const { return seconds + seconds / 4; }
};

struct InitOptions {
  uint64_t chunk_size = 65536;
  bool encrypt = false;
  KeySource key;
  ObjectLockPolicy object_lock;  // the backend must support it (an S3 bucket with Object Lock)
};

struct RepoStats {
  uint64_t blobs_stored = 0, blobs_deduplicated = 0;
  uint64_t bytes_raw_stored = 0, bytes_packed = 0;
  // Time spent, summed over threads: hashing, compressing and encrypting, writing packs.
  uint64_t hash_ns = 0, encode_ns = 0, pack_write_ns = 0;
};

class Repository {
 public:
  // The format version Init writes (docs/repository-format.md section 10); Open reads 1 to it.
  static constexpr int kFormatVersion = 3;
  static constexpr uint64_t kPackTarget = 16 << 20;

  // Writes the config of a new repository into an empty backend.
  static Status Init(storage::Backend& backend, const InitOptions& options);
  // Reads the config, checks the key, loads the index. Errors: kNoRepository, kUnauthenticated
  // (a wrong or missing key, or a key for a plain repository), kCorruption (a damaged or
  // altered config).
  static Result<std::unique_ptr<Repository>> Open(std::unique_ptr<storage::Backend> backend,
                                                  const KeySource& key);

  // Writes the packs still queued first (they stay unindexed unless Flush ran: gc's to remove).
  ~Repository();

  uint64_t chunk_size() const { return chunk_size_; }
  const std::string& id() const { return id_; }
  int version() const { return version_; }
  bool encrypted() const { return codec_.encrypted(); }
  const ObjectLockPolicy& object_lock() const { return object_lock_; }
  const BlobCodec& codec() const { return codec_; }
  storage::Backend& backend() { return *backend_; }
  const Index& index() const {
    AwaitIndex();
    return index_;
  }

  // Stores a blob unless one with its id exists; returns the id. `*is_new` tells which.
  Result<Id> Store(BlobType type, std::span<const uint8_t> plaintext, bool* is_new = nullptr);
  // Makes every stored blob durable and findable: open pack, then an index file.
  Status Flush();
  // Ends the open pack: blobs stored from now on go into another. It is written in the
  // background; the next Flush waits for it and indexes its blobs with the rest.
  Status SealPack();
  bool Has(const Id& id) const;
  // Loads, decrypts, decompresses and re-hashes a blob: kCorruption when any of it fails,
  // never wrong bytes. kNotFound for an id the index does not know.
  Result<std::vector<uint8_t>> Load(BlobType type, const Id& id);
  // Loads several blobs at once, blob ids[i] into outs[i], which must be exactly its size
  // (kCorruption when the index says otherwise). Adjacent blobs of one pack come in one read;
  // runs are read and decoded (decrypt, decompress, re-hash) on the repository's workers and
  // the calling thread, straight into `outs`. Fails with the first damaged blob's error, like
  // Load; `outs` may then hold anything.
  Status LoadInto(BlobType type, std::span<const Id> ids, std::span<const std::span<uint8_t>> outs);
  // Tells the backend these blobs will be loaded soon (ids the index does not know are
  // skipped): adjacent ones, and ones less than 1 MiB apart in a pack, as one range.
  void Prefetch(std::span<const Id> ids);

  RepoStats stats() const;

  // Key management (encrypted repositories; keys.h). The key that opened the repository
  // cannot be removed through it.
  Result<std::vector<KeyInfo>> ListKeys();
  Result<std::string> AddKey(const KeySource& key);
  Status RemoveKey(const std::string& name);
  // A new key, then the one that opened the repository removed (not a version 2 config key):
  // a passphrase change. Returns the new key's name.
  Result<std::string> ChangeKey(const KeySource& key);
  const std::string& key_name() const { return key_name_; }
  // Damage (docs/repository-format.md section 5a). A copy of a blob found damaged, or whose
  // pack is missing, is recorded in the repository (damage/ objects) and left out of the index:
  // Has() then says no, so the next backup that produces the blob stores a good copy, which
  // reads from then on. Loads record what they find (kCorruption, or a missing pack) by
  // themselves; recording fails quietly on a read-only repository.
  void RecordDamage(BlobType type, const Id& id, const std::string& error);
  // A blob whose every known copy is damaged (none is indexed).
  bool IsDamaged(const Id& id) const;
  bool HasDamage() const;
  // A copy (blob, pack) recorded as damaged: index repair must not list it again.
  bool IsDamagedCopy(const Id& id, const Id& pack) const;

  // Index files that could not be read when the repository was opened (their blobs are
  // unknown until the index is repaired); `check` reports them.
  const std::vector<std::string>& index_problems() const {
    AwaitIndex();
    return index_problems_;
  }
  // The names of those index files.
  const std::vector<std::string>& damaged_index_files() const {
    AwaitIndex();
    return damaged_index_files_;
  }

 private:
  Repository(std::unique_ptr<storage::Backend> b, BlobCodec codec);
  static constexpr int kMaxQueuedPacks = 2;
  // Where the backend takes objects in pieces, packs go to it in segments as they are built:
  // at most kMaxPieces in flight (12 MiB), not two whole packs beside the open one (51 MiB).
  // Fresh memory costs more than the disk write here: a 100 MiB incremental spent a third of
  // its CPU clearing the pages of its pack buffers.
  static constexpr size_t kSegment = 4 << 20;
  static constexpr int kMaxPieces = 3;
  // Reads the index files into index_, recording the damaged ones; runs on the thread Open
  // starts. Whatever reads index_, damaged_ or the index problems calls AwaitIndex first.
  void LoadIndex(const std::vector<storage::ObjectInfo>& files);
  void AwaitIndex() const { index_loaded_.wait(); }
  Status LoadDamage();
  // The error for a blob the index lacks: "damaged" when a damaged copy is known.
  Status MissingBlob(const Id& id) const;
  static bool IsDamage(const Status& s);
  // Finishes the open pack and queues it for the pack writer threads (as many as the backend
  // wants saves in flight), so that the callers keep hashing and compressing while it is
  // written; waits while more than kMaxQueuedPacks wait beside those being written (memory
  // stays bounded). Flush waits for the queue to drain. Returns the
  // first failed save. Called and returns with `lock` held.
  Status SavePack(std::unique_lock<std::mutex>& lock);
  // Queues a finished pack or a segment for the writer threads (started as needed). Called with
  // mu_ held.
  void Enqueue(PackBuilder::Finished f);
  // Waits while more than the allowed pieces are queued or being written; the first failed
  // save. Called and returns with `lock` held.
  Status WaitForRoom(std::unique_lock<std::mutex>& lock);
  void PackWriterMain();
  // Saves a finished pack (counted in saves_in_flight_) outside the lock and records the
  // outcome. Called and returns with `lock` held.
  void WritePack(PackBuilder::Finished f, std::unique_lock<std::mutex>& lock);
  // Saves a pack; one that exists already under its name is checked (and replaced if damaged).
  Status SavePackObject(const PackBuilder::Finished& f);
  Status SavePackBytes(const PackBuilder::Finished& f);
  // A piece of a streamed pack into pack_stream_ (the writer thread's), committed with the last.
  Status StreamPackPiece(const PackBuilder::Finished& f);

  std::unique_ptr<storage::Backend> backend_;
  BlobCodec codec_;
  std::string id_;
  int version_ = 0;
  ObjectLockPolicy object_lock_;
  uint64_t chunk_size_ = 0;
  nlohmann::json config_;
  std::vector<uint8_t> master_bytes_;  // encrypted repositories: for new key objects
  std::string key_name_;
  Index index_;
  mutable std::mutex mu_;
  PackBuilder builder_;
  std::unordered_set<Id, IdHash> pending_;    // stored, not yet in an index file
  std::vector<PackEntry> unindexed_;          // in saved packs, not yet in an index file
  std::deque<PackBuilder::Finished> queued_;  // finished packs (or segments) for the writers
  const bool streaming_ = backend_->WritesInPieces();
  std::unique_ptr<storage::ObjectWriter> pack_stream_;  // the streamed pack being written
  Status pack_stream_error_;                            // its first failure
  int saves_in_flight_ = 0;                             // queued or being written
  bool stopping_ = false;
  Status save_error_;
  std::condition_variable saved_, queued_cv_;
  std::vector<std::thread> pack_writers_;  // started with the first packs
  RepoStats stats_;
  std::atomic<uint64_t> hash_ns_{0}, encode_ns_{0}, pack_write_ns_{0};
  std::vector<std::string> index_problems_, damaged_index_files_;
  mutable std::mutex damage_mu_;
  std::set<std::pair<Id, std::string>> damaged_copies_;  // (blob, first 32 hex of its pack)
  std::unordered_map<Id, std::string, IdHash> damaged_;  // no good copy: what went wrong
  std::shared_future<void> index_loaded_;                // LoadIndex's thread (set by Open)
  WorkerPool workers_{int(std::max(1u, std::thread::hardware_concurrency()))};
};

}  // namespace vmbackup::repo
