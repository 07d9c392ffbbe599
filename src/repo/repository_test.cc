// Round trips of disks through restore points, over real Repository objects on the memory and
// local-folder backends; encryption and damage.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "base/testing/temp_dir.h"
#include "repo/maintenance.h"
#include "repo/point.h"
#include "storage/local_backend.h"
#include "storage/mem_backend.h"
#include "storage/testing/forwarding_backend.h"

namespace vmbackup::repo {
namespace {

constexpr uint64_t kChunk = 65536;

std::vector<uint8_t> MixedDisk(uint64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> d(size, 0);
  for (uint64_t c = 0; c < size / kChunk; ++c) {
    uint8_t* p = d.data() + c * kChunk;
    switch (c % 4) {
      case 0:
      case 1:
        for (uint64_t i = 0; i < kChunk; ++i) p[i] = uint8_t(rng());
        break;
      case 2: break;  // zeros
      case 3:
        for (uint64_t i = 0; i < kChunk; ++i) p[i] = uint8_t("log line ok\n"[i % 12]);
        break;
    }
  }
  return d;
}

std::unique_ptr<Repository> NewRepo(std::unique_ptr<storage::Backend> b, InitOptions o = {}) {
  EXPECT_TRUE(Repository::Init(*b, o).ok());
  auto r = Repository::Open(std::move(b), o.key);
  EXPECT_TRUE(r) << r.error().ToString();
  return r ? std::move(*r) : nullptr;
}

Result<Point> Backup(Repository& repo, const std::vector<uint8_t>& disk, const std::string& parent,
                     const std::vector<uint64_t>& chunks_to_write) {
  Point meta;
  meta.vm_name = "vm-name-that-must-stay-secret";
  meta.parent = parent;
  VMBACKUP_ASSIGN_OR_RETURN(auto w, PointWriter::Start(repo, meta));
  PointDisk d;
  d.key = 2000;
  d.capacity = disk.size();
  VMBACKUP_ASSIGN_OR_RETURN(size_t idx, w->AddDisk(d));
  for (uint64_t c : chunks_to_write) {
    uint64_t off = c * kChunk;
    uint64_t n = std::min<uint64_t>(kChunk, disk.size() - off);
    VMBACKUP_RETURN_IF_ERROR(w->WriteChunk(idx, off, {disk.data() + off, n}));
  }
  return w->Commit();
}

// A point writer with one disk (key 2000) of `capacity` bytes, and that disk's index.
struct OneDisk {
  std::unique_ptr<PointWriter> writer;
  size_t index = 0;
};
Result<OneDisk> StartOneDisk(Repository& repo, uint64_t capacity) {
  Point meta;
  VMBACKUP_ASSIGN_OR_RETURN(auto w, PointWriter::Start(repo, meta));
  PointDisk d;
  d.key = 2000;
  d.capacity = capacity;
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, w->AddDisk(d));
  return OneDisk{std::move(w), index};
}

std::vector<uint8_t> Restore(Repository& repo, const Point& p) {
  auto r = PointDiskReader::Open(repo, p, 0);
  EXPECT_TRUE(r);
  std::vector<uint8_t> out((*r)->capacity());
  Status s = (*r)->Read(0, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<uint64_t> AllChunks(uint64_t size) {
  std::vector<uint64_t> v;
  for (uint64_t c = 0; c * kChunk < size; ++c) v.push_back(c);
  return v;
}

TEST(Repository, FullThenIncrementalsRoundTrip) {
  auto repo = NewRepo(std::make_unique<storage::MemBackend>());
  ASSERT_TRUE(repo);
  const uint64_t size = 8 * 1024 * 1024 + 12345;  // a partial last chunk
  auto disk = MixedDisk(size, 1);
  auto full = Backup(*repo, disk, "", AllChunks(size));
  ASSERT_TRUE(full) << full.error().ToString();
  EXPECT_EQ(Restore(*repo, *full), disk);
  std::vector<std::vector<uint8_t>> states = {disk};
  std::vector<Point> points = {*full};
  std::mt19937_64 rng(9);
  for (int round = 0; round < 4; ++round) {
    uint64_t before = repo->stats().blobs_stored;
    std::vector<uint64_t> changed;
    for (int k = 0; k < 6; ++k) {
      uint64_t c = rng() % (size / kChunk);
      for (uint64_t i = 0; i < kChunk; ++i) disk[c * kChunk + i] = uint8_t(rng());
      changed.push_back(c);
    }
    std::sort(changed.begin(), changed.end());
    changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
    auto inc = Backup(*repo, disk, points.back().id, changed);
    ASSERT_TRUE(inc) << inc.error().ToString();
    // Only the changed chunks and the one leaf page (plus its ancestors) are new.
    EXPECT_LE(repo->stats().blobs_stored - before, changed.size() + 2);
    states.push_back(disk);
    points.push_back(*inc);
  }
  for (size_t i = 0; i < points.size(); ++i) EXPECT_EQ(Restore(*repo, points[i]), states[i]) << i;
  auto listed = ListPoints(*repo);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), points.size());
}

// Trees of many changed leaves: the writer stores leaves early to bound its memory, and
// touching an early-stored leaf again (out of disk order) still gives the right tree.
TEST(Tree, ManyChangedLeavesAndOutOfOrderWrites) {
  auto repo = NewRepo(std::make_unique<storage::MemBackend>());
  const uint64_t leaves = 300, chunks = leaves * kTreeFanout + 17;
  auto id_of = [](uint64_t i, uint64_t gen) {
    std::string s = std::to_string(i) + "/" + std::to_string(gen);
    return Sha256({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  };
  std::map<uint64_t, Id> want;
  TreeWriter w(*repo, chunks, std::nullopt);
  for (uint64_t p = 0; p <= leaves; ++p) {
    uint64_t i = std::min(chunks - 1, p * kTreeFanout + p % 7);
    ASSERT_TRUE(w.Set(i, id_of(i, 0)).ok());
    want[i] = id_of(i, 0);
  }
  for (uint64_t i : {uint64_t(3 * kTreeFanout + 9), uint64_t(150 * kTreeFanout), uint64_t(5)}) {
    ASSERT_TRUE(w.Set(i, id_of(i, 1)).ok());  // leaves stored early, touched again
    want[i] = id_of(i, 1);
  }
  ASSERT_TRUE(w.Set(3 * kTreeFanout + 3, Id{}).ok());  // a zero over a written chunk
  want.erase(3 * kTreeFanout + 3);
  auto root = w.Finish();
  ASSERT_TRUE(root) << root.error().ToString();
  ASSERT_TRUE(repo->Flush().ok());
  auto check = [&](const TreeRoot& r) {
    TreeReader reader(*repo, r, chunks);
    std::map<uint64_t, Id> got;
    ASSERT_TRUE(reader
                    .ForEachChunk(0, chunks,
                                  [&](uint64_t i, const Id& id) {
                                    got[i] = id;
                                    return Status::Ok();
                                  })
                    .ok());
    EXPECT_EQ(got, want);
  };
  check(*root);

  // An incremental over it, touching leaves in descending order.
  TreeWriter inc(*repo, chunks, *root);
  for (uint64_t p = leaves; p-- > 0;) {
    if (p % 2) continue;
    uint64_t i = p * kTreeFanout + 100;
    ASSERT_TRUE(inc.Set(i, id_of(i, 2)).ok());
    want[i] = id_of(i, 2);
  }
  auto root2 = inc.Finish();
  ASSERT_TRUE(root2) << root2.error().ToString();
  ASSERT_TRUE(repo->Flush().ok());
  check(*root2);
}

TEST(Repository, SparseTerabyteDiskHoldsLittle) {
  auto repo = NewRepo(std::make_unique<storage::MemBackend>());
  const uint64_t cap = uint64_t(1) << 40;
  Point meta;
  auto w = PointWriter::Start(*repo, meta);
  ASSERT_TRUE(w);
  PointDisk d;
  d.key = 2000;
  d.capacity = cap;
  size_t idx = *(*w)->AddDisk(d);
  std::vector<uint8_t> a(kChunk, 0xAA), b(kChunk, 0xBB);
  ASSERT_TRUE((*w)->WriteChunk(idx, 0, a).ok());
  ASSERT_TRUE((*w)->WriteChunk(idx, cap - kChunk, b).ok());
  ASSERT_TRUE((*w)->WriteChunk(idx, 700ull << 30, a).ok());  // deduplicated with chunk 0
  auto p = (*w)->Commit();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->disks[0].tree.depth, 3);
  EXPECT_LT(repo->stats().blobs_stored, 12u);
  auto r = PointDiskReader::Open(*repo, *p, 0);
  ASSERT_TRUE(r);
  auto alloc = (*r)->Allocated(0, cap);
  ASSERT_TRUE(alloc);
  EXPECT_EQ(alloc->ToVector(),
            (std::vector<Extent>{{0, kChunk}, {700ull << 30, kChunk}, {cap - kChunk, kChunk}}));
  std::vector<uint8_t> buf(3 * kChunk);
  ASSERT_TRUE((*r)->Read(cap - 3 * kChunk, buf).ok());
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], i < 2 * kChunk ? 0 : 0xBB) << i;
}

size_t CountNeedle(const std::string& dir, const std::string& needle) {
  size_t found = 0;
  std::function<void(const std::string&)> walk = [&](const std::string& d) {
    DIR* dp = ::opendir(d.c_str());
    if (!dp) return;
    while (dirent* e = ::readdir(dp)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string p = d + "/" + n;
      if (e->d_type == DT_DIR) {
        walk(p);
      } else {
        auto bytes = testing::ReadBytes(p);
        found += std::string(bytes.begin(), bytes.end()).find(needle) != std::string::npos;
      }
    }
    ::closedir(dp);
  };
  walk(dir);
  return found;
}

TEST(Repository, EncryptionKeysAndNoPlaintext) {
  testing::TempDir dir;
  InitOptions o;
  o.encrypt = true;
  o.key.key_file = dir / "key";
  auto backend = storage::LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(backend);
  auto repo = NewRepo(std::move(*backend), o);
  ASSERT_TRUE(repo);
  EXPECT_TRUE(repo->encrypted());
  auto disk = MixedDisk(1 << 20, 3);
  auto p = Backup(*repo, disk, "", AllChunks(disk.size()));
  ASSERT_TRUE(p);
  // Neither random nor text content appears in any repository file.
  EXPECT_EQ(CountNeedle(dir / "repo", std::string(disk.begin() + 1000, disk.begin() + 1032)), 0u);
  EXPECT_EQ(CountNeedle(dir / "repo", "log line ok\nlog line ok\n"), 0u);
  // (A needle long enough that random ciphertext cannot hold it by chance.)
  EXPECT_EQ(CountNeedle(dir / "repo", "vm-name-that-must-stay-secret"), 0u);
  // Reopen with the key: the point reads back. With another key: refused.
  auto again = Repository::Open(std::move(*storage::LocalBackend::Open(dir / "repo")), o.key);
  ASSERT_TRUE(again) << again.error().ToString();
  auto loaded = LoadPoint(**again, p->id);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(Restore(**again, *loaded), disk);
  testing::WriteText(dir / "other", ToHex(RandomBytes(64)));
  KeySource wrong{dir / "other", std::nullopt};
  auto refused = Repository::Open(std::move(*storage::LocalBackend::Open(dir / "repo")), wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnauthenticated);
  auto none = Repository::Open(std::move(*storage::LocalBackend::Open(dir / "repo")), KeySource{});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kUnauthenticated);
}

TEST(Repository, PassphraseKey) {
  InitOptions o;
  o.encrypt = true;
  o.key.passphrase = "correct horse";
  auto mem = std::make_unique<storage::MemBackend>();
  storage::MemBackend* raw = mem.get();
  ASSERT_TRUE(Repository::Init(*raw, o).ok());
  auto keys = raw->List(storage::ObjectType::kKey);
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->size(), 1u);
  auto key = raw->Load({storage::ObjectType::kKey, (*keys)[0].name});
  ASSERT_TRUE(key);
  EXPECT_NE(std::string(key->begin(), key->end()).find("scrypt"), std::string::npos);
  EXPECT_TRUE(Repository::Open(std::move(mem), o.key));
}

// A repository in a local folder holding one full point of a mixed disk.
struct LocalPoint {
  LocalPoint(uint64_t size, uint64_t seed) : disk(MixedDisk(size, seed)) {
    auto backend = storage::LocalBackend::Create(dir / "repo");
    EXPECT_TRUE(backend);
    if (!backend) return;
    repo = NewRepo(std::move(*backend));
    auto p = Backup(*repo, disk, "", AllChunks(disk.size()));
    EXPECT_TRUE(p);
    if (p) point = *p;
  }
  std::string PackPath(const Id& pack) {
    return dir / ("repo/packs/" + pack.Hex().substr(0, 2) + "/" + pack.Hex());
  }
  testing::TempDir dir;
  std::vector<uint8_t> disk;
  std::unique_ptr<Repository> repo;
  Point point;
};

TEST(Repository, DamageIsReportedNeverWrongBytes) {
  LocalPoint lp(2 << 20, 4);
  ASSERT_TRUE(lp.repo && !lp.point.disks.empty());
  auto& repo = lp.repo;
  auto& disk = lp.disk;
  auto p = &lp.point;
  auto packs = repo->backend().List(storage::ObjectType::kPack);
  ASSERT_TRUE(packs);
  ASSERT_EQ(packs->size(), 2u);  // chunks, then tree pages
  // The pack trailers agree with the index.
  size_t entries = 0;
  for (const auto& pk : *packs) {
    auto e = ReadPackEntries(repo->backend(), repo->codec(), *Id::FromHex(pk.name));
    ASSERT_TRUE(e) << e.error().ToString();
    for (const PackEntry& pe : *e) {
      auto loc = repo->index().Find(pe.id);
      ASSERT_TRUE(loc);
      EXPECT_EQ(loc->offset, pe.loc.offset);
    }
    entries += e->size();
  }
  EXPECT_EQ(entries, repo->index().size());
  // Flip one byte inside the first chunk's blob.
  auto r = PointDiskReader::Open(*repo, *p, 0);
  TreeReader tree(*repo, p->disks[0].tree, 32);
  Id first = *tree.ChunkAt(0);
  auto loc = repo->index().Find(first);
  ASSERT_TRUE(loc);
  std::string path = lp.PackPath(loc->pack);
  auto bytes = testing::ReadBytes(path);
  bytes[loc->offset + 100] ^= 0x01;
  testing::WriteBytes(path, bytes);
  std::vector<uint8_t> buf(kChunk);
  Status s = (*r)->Read(0, buf);
  EXPECT_EQ(s.code(), ErrorCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(first.Hex()), std::string::npos);
  // Other chunks still read.
  ASSERT_TRUE((*r)->Read(kChunk, buf).ok());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), disk.begin() + kChunk));
}

// Reads of any offset and length: chunks covered in part at either end, zero chunks, a range
// inside one chunk, the partial last chunk.
TEST(Repository, ReadsAtAnyOffsetAndLength) {
  auto repo = NewRepo(std::make_unique<storage::MemBackend>());
  ASSERT_TRUE(repo);
  const uint64_t size = 3 * 1024 * 1024 + 4321;
  auto disk = MixedDisk(size, 6);
  auto p = Backup(*repo, disk, "", AllChunks(size));
  ASSERT_TRUE(p) << p.error().ToString();
  auto r = PointDiskReader::Open(*repo, *p, 0);
  ASSERT_TRUE(r);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) {
    uint64_t offset = rng() % size,
             length = 1 + rng() % std::min<uint64_t>(size - offset, 5 * kChunk);
    std::vector<uint8_t> buf(length, 0xee);
    Status s = (*r)->Read(offset, buf);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), disk.begin() + long(offset)))
        << offset << "+" << length;
  }
  std::vector<uint8_t> past(11);
  EXPECT_EQ((*r)->Read(size - 10, past).code(), ErrorCode::kInvalidArgument);
}

// LoadInto decodes into the caller's buffers and refuses a buffer of another size than the
// index gives (the caller's metadata and the index disagree: corruption).
TEST(Repository, LoadIntoChecksSizes) {
  auto repo = NewRepo(std::make_unique<storage::MemBackend>());
  ASSERT_TRUE(repo);
  auto a = MixedDisk(kChunk, 1), b = MixedDisk(4 * kChunk, 2);
  b.resize(kChunk / 2);
  auto ia = repo->Store(BlobType::kChunk, a), ib = repo->Store(BlobType::kChunk, b);
  ASSERT_TRUE(ia && ib);
  ASSERT_TRUE(repo->Flush().ok());
  std::vector<uint8_t> oa(a.size()), ob(b.size());
  std::vector<Id> ids = {*ib, *ia};
  std::vector<std::span<uint8_t>> outs = {ob, oa};
  ASSERT_TRUE(repo->LoadInto(BlobType::kChunk, ids, outs).ok());
  EXPECT_EQ(oa, a);
  EXPECT_EQ(ob, b);
  std::vector<uint8_t> wrong(kChunk);
  outs = {wrong, oa};
  Status s = repo->LoadInto(BlobType::kChunk, ids, outs);
  EXPECT_EQ(s.code(), ErrorCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(ib->Hex()), std::string::npos);
  EXPECT_EQ(repo->LoadInto(BlobType::kTree, ids, outs).code(), ErrorCode::kCorruption);
}

// Counts the ranged reads of a MemBackend.
class CountingReads final : public storage::testing::ForwardingBackend {
 public:
  CountingReads() : ForwardingBackend(std::make_unique<storage::MemBackend>()) {}
  std::atomic<int> reads{0};
  Status ReadRange(const storage::ObjectRef& r, uint64_t offset, std::span<uint8_t> out) override {
    ++reads;
    return ForwardingBackend::ReadRange(r, offset, out);
  }
};

// A point's commit writes one index file for its chunks and its tree pages, which keep a pack
// of their own (gc frees a pruned point's tree pages by whole packs); the point reads back.
TEST(Repository, ACommitWritesOneIndexFileAndKeepsTreePagesApart) {
  storage::MemBackend mem;
  auto repo = NewRepo(std::make_unique<storage::testing::ForwardingBackend>(mem));
  ASSERT_TRUE(repo);
  auto count = [&](storage::ObjectType t) { return mem.List(t)->size(); };
  const std::vector<uint8_t> disk = MixedDisk(kChunk, 16);
  auto p = Backup(*repo, disk, "", AllChunks(disk.size()));
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(count(storage::ObjectType::kIndex), 1u);
  EXPECT_EQ(count(storage::ObjectType::kPack), 2u);  // chunks, tree pages
  EXPECT_EQ(Restore(*repo, *p), disk);
  auto check = Check(*repo);
  ASSERT_TRUE(check);
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
}

// Index files wait at a gate: reading them is held until the test opens it (or 5 s pass:
// then `timed_out`, and a synchronous loader fails the test instead of hanging it).
class GatedIndex final : public storage::testing::ForwardingBackend {
 public:
  explicit GatedIndex(storage::Backend& inner) : ForwardingBackend(inner) {}
  Result<std::vector<uint8_t>> Load(const storage::ObjectRef& r) override {
    if (r.type == storage::ObjectType::kIndex) {
      std::unique_lock<std::mutex> l(mu_);
      ++waiting_;
      cv_.notify_all();
      if (!cv_.wait_for(l, std::chrono::seconds(5), [&] { return open_; })) timed_out = true;
    }
    return ForwardingBackend::Load(r);
  }
  void WaitForAReader() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return waiting_ > 0; });
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  std::atomic<bool> timed_out{false};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

// Open returns while the index files are still being read (a backup makes its snapshot
// meanwhile); whatever needs the index waits for them and then finds every blob.
TEST(Repository, OpenReturnsWhileTheIndexLoadsAndReadersWaitForIt) {
  storage::MemBackend mem;
  std::vector<Id> ids;
  {
    auto repo = NewRepo(std::make_unique<storage::testing::ForwardingBackend>(mem));
    ASSERT_TRUE(repo);
    for (int i = 0; i < 3; ++i) {
      auto id = repo->Store(BlobType::kChunk, MixedDisk(kChunk, 5 + i));
      ASSERT_TRUE(id);
      ids.push_back(*id);
    }
    ASSERT_TRUE(repo->Flush().ok());
  }
  auto gated = std::make_unique<GatedIndex>(mem);
  GatedIndex* gate = gated.get();
  auto repo = Repository::Open(std::move(gated), KeySource{});
  ASSERT_TRUE(repo) << repo.error().ToString();
  gate->WaitForAReader();
  EXPECT_FALSE(gate->timed_out);  // Open returned with the index file unread
  std::atomic<bool> found{false};
  std::thread reader([&] { found = (*repo)->Has(ids[1]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(found);  // waiting, not answering "no" from a half-loaded index
  gate->Open();
  reader.join();
  EXPECT_TRUE(found);
  for (const Id& id : ids) EXPECT_TRUE((*repo)->Load(BlobType::kChunk, id));
  EXPECT_EQ((*repo)->index().size(), ids.size());
}

// A deduplicated disk names one blob many times in one read (a repeated pattern): the blob is
// read and decoded once and every buffer that wants it gets it; a wrong buffer among them is
// still refused.
TEST(Repository, LoadIntoReadsABlobNamedManyTimesOnce) {
  auto counting = std::make_unique<CountingReads>();
  CountingReads* backend = counting.get();
  auto repo = NewRepo(std::move(counting));
  ASSERT_TRUE(repo);
  auto a = MixedDisk(kChunk, 3), b = MixedDisk(kChunk, 4);
  auto ia = repo->Store(BlobType::kChunk, a), ib = repo->Store(BlobType::kChunk, b);
  ASSERT_TRUE(ia && ib);
  ASSERT_TRUE(repo->Flush().ok());
  std::vector<std::vector<uint8_t>> bufs(5, std::vector<uint8_t>(kChunk));
  std::vector<Id> ids = {*ia, *ib, *ia, *ia, *ib};
  std::vector<std::span<uint8_t>> outs(bufs.begin(), bufs.end());
  backend->reads = 0;
  ASSERT_TRUE(repo->LoadInto(BlobType::kChunk, ids, outs).ok());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(bufs[i], ids[i] == *ia ? a : b) << i;
  EXPECT_EQ(backend->reads, 1);  // the two blobs lie side by side in one pack
  std::vector<uint8_t> small(kChunk / 2);
  outs[3] = small;
  Status s = repo->LoadInto(BlobType::kChunk, ids, outs);
  EXPECT_EQ(s.code(), ErrorCode::kCorruption) << s.ToString();
}

// A version 1 repository (no checksums) opens, reads and takes new points in version 1 blobs,
// which an older vmbackup still reads; a newer version is refused.
TEST(Repository, VersionOneStaysVersionOne) {
  auto mem = std::make_unique<storage::MemBackend>();
  storage::MemBackend* backend = mem.get();
  ASSERT_TRUE(Repository::Init(*backend, {}).ok());
  const storage::ObjectRef config{storage::ObjectType::kConfig, "config"};
  auto SetVersion = [&](int version) {
    auto text = backend->Load(config);
    ASSERT_TRUE(text);
    std::string s(text->begin(), text->end());
    size_t at = s.find("\"version\": 3");
    ASSERT_NE(at, std::string::npos) << s;
    s.replace(at, 12, "\"version\": " + std::to_string(version));
    ASSERT_TRUE(backend->Delete(config).ok());
    ASSERT_TRUE(backend->Save(config, {reinterpret_cast<const uint8_t*>(s.data()), s.size()}).ok());
  };
  SetVersion(1);
  auto repo = Repository::Open(std::move(mem), {});
  ASSERT_TRUE(repo) << repo.error().ToString();
  auto disk = MixedDisk(1 << 20, 3);
  auto p = Backup(**repo, disk, "", AllChunks(disk.size()));
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(Restore(**repo, *p), disk);
  TreeReader tree(**repo, p->disks[0].tree, 16);
  auto loc = (*repo)->index().Find(*tree.ChunkAt(0));
  ASSERT_TRUE(loc);
  auto blob = backend->LoadRange({storage::ObjectType::kPack, loc->pack.Hex()}, loc->offset,
                                 loc->stored_length);
  ASSERT_TRUE(blob);
  EXPECT_EQ((*blob)[0] & kBlobChecksummed, 0);
  EXPECT_EQ(blob->size(), kChunk + 1);  // random data: flags and payload only

  auto other = std::make_unique<storage::MemBackend>();
  backend = other.get();
  ASSERT_TRUE(Repository::Init(*backend, {}).ok());
  SetVersion(4);
  auto newer = Repository::Open(std::move(other), {});
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().code(), ErrorCode::kNotSupported);
}

// A backup killed after its packs were written, before their index: the next backup of the
// same data makes the same packs (same names). An identical one is taken as it is, a damaged
// one is replaced, and the point reads back either way.
TEST(Repository, APackLeftByAKilledBackupIsReusedOrReplaced) {
  for (bool damage : {false, true}) {
    testing::TempDir dir;
    auto backend = storage::LocalBackend::Create(dir / "repo");
    ASSERT_TRUE(backend);
    auto repo = NewRepo(std::move(*backend));
    auto disk = MixedDisk(48 << 20, 11);  // more than one pack: the first is written
    {
      auto w = StartOneDisk(*repo, disk.size());
      ASSERT_TRUE(w);
      for (uint64_t c : AllChunks(disk.size()))
        ASSERT_TRUE(
            w->writer->WriteChunk(w->index, c * kChunk, {disk.data() + c * kChunk, kChunk}).ok());
      w->writer->Abandon();
    }
    repo.reset();  // the queued and open packs are written, never indexed
    std::string leftover;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "repo/packs"))
      if (e.is_regular_file()) leftover = e.path();
    ASSERT_FALSE(leftover.empty());
    if (damage) {
      auto bytes = testing::ReadBytes(leftover);
      bytes[100] ^= 0xff;
      testing::WriteBytes(leftover, bytes);
    }
    auto again = Repository::Open(std::move(*storage::LocalBackend::Open(dir / "repo")), {});
    ASSERT_TRUE(again);
    auto p = Backup(**again, disk, "", AllChunks(disk.size()));
    ASSERT_TRUE(p) << p.error().ToString();
    EXPECT_EQ(Restore(**again, *p), disk);
    auto v = Verify(**again, {});
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->damaged.empty());
  }
}

// How many of the pages of [offset, offset + length) of a file are in the page cache.
size_t ResidentPages(const std::string& path, uint64_t offset, uint64_t length) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t first = offset / page * page, end = offset + length;
  void* map = ::mmap(nullptr, end - first, PROT_READ, MAP_SHARED, fd, off_t(first));
  ::close(fd);
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> in((end - first + page - 1) / page);
  size_t resident = 0;
  if (::mincore(map, end - first, in.data()) == 0)
    for (unsigned char c : in) resident += c & 1;
  ::munmap(map, end - first);
  return resident;
}

// Prefetch brings a range's packs into the page cache ahead of the reads (packs are written
// around the cache, so they start out of it).
TEST(Repository, PrefetchReadsAhead) {
  LocalPoint lp(4 << 20, 8);
  ASSERT_FALSE(lp.point.disks.empty());
  auto r = PointDiskReader::Open(*lp.repo, lp.point, 0);
  ASSERT_TRUE(r);
  auto loc = lp.repo->index().Find(*(*r)->ChunkIdAt(kChunk));
  ASSERT_TRUE(loc);
  std::string path = lp.PackPath(loc->pack);
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (ResidentPages(path, loc->offset, loc->stored_length) != 0)
    GTEST_SKIP() << "this file system keeps the pack cached";
  ASSERT_TRUE((*r)->Prefetch(0, 4 * kChunk).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const size_t pages = (loc->stored_length + 4095) / 4096;
  while (ResidentPages(path, loc->offset, loc->stored_length) < pages &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(ResidentPages(path, loc->offset, loc->stored_length), pages);
  // Hints past the end, or over nothing, are harmless.
  EXPECT_TRUE((*r)->Prefetch(lp.disk.size() + kChunk, kChunk).ok());
  EXPECT_TRUE((*r)->Prefetch(lp.disk.size() - 1, 100 * kChunk).ok());
  std::vector<uint8_t> all(lp.disk.size());
  ASSERT_TRUE((*r)->Read(0, all).ok());
  EXPECT_EQ(all, lp.disk);
}

// Packs are written by a background thread: a pack the file system refuses (here a file size
// limit, as on a full disk) fails the commit with the system's error, and what was committed
// before stays whole.
// A memory store that, like a remote one, wants several saves in flight, and is slow to save a
// pack: it records how many pack saves ran at once.
class SlowRemoteBackend final : public storage::testing::ForwardingBackend {
 public:
  SlowRemoteBackend() : ForwardingBackend(std::make_unique<storage::MemBackend>()) {}
  Status Save(const storage::ObjectRef& r, std::span<const uint8_t> d) override {
    if (r.type != storage::ObjectType::kPack) return ForwardingBackend::Save(r, d);
    const int now = ++saving_;
    for (int seen = most_; now > seen && !most_.compare_exchange_weak(seen, now);) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Status s = ForwardingBackend::Save(r, d);
    --saving_;
    return s;
  }
  int SavesInFlight() const override { return 3; }
  int most() const { return most_; }

 private:
  std::atomic<int> saving_{0}, most_{0};
};

TEST(Repository, PacksGoToARemoteStoreSeveralAtOnceAndAllAreIndexed) {
  auto owned = std::make_unique<SlowRemoteBackend>();
  SlowRemoteBackend* backend = owned.get();
  auto repo = NewRepo(std::move(owned));
  ASSERT_TRUE(repo);
  std::mt19937_64 rng(11);
  std::vector<uint8_t> disk(128 << 20);  // random: 8 packs of 16 MiB
  for (auto& b : disk) b = uint8_t(rng());
  std::vector<uint64_t> all(disk.size() / kChunk);
  for (uint64_t c = 0; c < all.size(); ++c) all[c] = c;
  auto p = Backup(*repo, disk, "", all);
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_GT(backend->most(), 1) << "pack saves never overlapped";
  EXPECT_LE(backend->most(), 3) << "more pack saves at once than the store wants";
  EXPECT_EQ(Restore(*repo, *p), disk);
  auto check = Check(*repo);
  ASSERT_TRUE(check);
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
}

TEST(Repository, AFailedPackWriteFailsTheCommitAndLosesNothing) {
  LocalPoint lp(1 << 20, 12);
  ASSERT_FALSE(lp.point.disks.empty());
  std::mt19937_64 rng(3);
  std::vector<uint8_t> big(48 << 20);
  for (auto& b : big) b = uint8_t(rng());
  struct rlimit old;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4 << 20;  // packs are 16 MiB
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto failed = Backup(*lp.repo, big, lp.point.id, AllChunks(big.size()));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().ToString().find("too large"), std::string::npos)
      << failed.error().ToString();
  lp.repo.reset();  // waits for the packs still queued
  auto reopened = Repository::Open(std::move(*storage::LocalBackend::Open(lp.dir / "repo")), {});
  ASSERT_TRUE(reopened);
  auto points = ListPoints(**reopened);
  ASSERT_TRUE(points);
  EXPECT_EQ(points->size(), 1u);
  EXPECT_EQ(Restore(**reopened, lp.point), lp.disk);
  auto check = Check(**reopened);
  ASSERT_TRUE(check);
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
}

// A pack built with StreamSegments is the same pack, byte for byte, as one built in one buffer:
// its segments (all of the asked size) and its last piece, in order.
TEST(PackBuilder, SegmentsAndTheLastPieceAreThePackBuiltWhole) {
  BlobCodec codec(std::nullopt);
  PackBuilder whole(codec), streamed(codec);
  std::vector<AlignedBuffer> segments;
  streamed.StreamSegments(8192, [&](AlignedBuffer&& b) { segments.push_back(std::move(b)); });
  std::mt19937_64 rng(5);
  for (int i = 0; i < 40; ++i) {
    std::vector<uint8_t> blob(size_t(rng() % 3000) + 1);
    for (auto& b : blob) b = uint8_t(rng());
    const Id id = codec.IdOf(blob);
    whole.Add(BlobType::kChunk, id, blob, uint32_t(blob.size()));
    streamed.Add(BlobType::kChunk, id, blob, uint32_t(blob.size()));
    ASSERT_EQ(streamed.bytes(), whole.bytes());
  }
  ASSERT_GT(segments.size(), 3u);
  PackBuilder::Finished a = whole.Finish(), b = streamed.Finish();
  EXPECT_TRUE(a.whole);
  EXPECT_FALSE(b.whole);
  std::vector<uint8_t> joined;
  for (const AlignedBuffer& seg : segments) {
    EXPECT_EQ(seg.size(), 8192u);
    joined.insert(joined.end(), seg.begin(), seg.end());
  }
  joined.insert(joined.end(), b.bytes.begin(), b.bytes.end());
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), a.bytes.begin(), a.bytes.end()));
  EXPECT_EQ(a.id, b.id);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i)
    EXPECT_EQ(a.entries[i].loc.offset, b.entries[i].loc.offset);
}

// On a local disk packs leave in segments while they are built: what the repository holds
// unwritten stays a few segments (not two or three whole packs), the store sees no piece larger
// than a segment, and every pack is whole and indexed in the end.
class PieceCountingBackend final : public storage::testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  Result<std::unique_ptr<storage::ObjectWriter>> NewWriter(storage::ObjectType t) override {
    VMBACKUP_ASSIGN_OR_RETURN(auto inner, ForwardingBackend::NewWriter(t));
    return std::unique_ptr<storage::ObjectWriter>(new Counting(*this, std::move(inner)));
  }
  uint64_t appended() const { return appended_; }
  size_t largest() const { return largest_; }

 private:
  struct Counting final : storage::ObjectWriter {
    Counting(PieceCountingBackend& backend, std::unique_ptr<storage::ObjectWriter> inner)
        : b(backend), w(std::move(inner)) {}
    Status Append(std::span<const uint8_t> bytes) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a slow disk
      b.largest_ = std::max<size_t>(b.largest_, bytes.size());
      b.appended_ += bytes.size();
      return w->Append(bytes);
    }
    Status Commit(const std::string& name) override { return w->Commit(name); }
    Result<bool> SameAsExisting() override { return w->SameAsExisting(); }
    Status ReplaceExisting() override { return w->ReplaceExisting(); }
    PieceCountingBackend& b;
    std::unique_ptr<storage::ObjectWriter> w;
  };
  std::atomic<uint64_t> appended_{0};
  std::atomic<size_t> largest_{0};
};

TEST(Repository, PacksLeaveForALocalDiskInSegmentsAsTheyAreBuilt) {
  testing::TempDir dir;
  auto local = storage::LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(local);
  auto owned = std::make_unique<PieceCountingBackend>(std::move(*local));
  PieceCountingBackend* backend = owned.get();
  auto repo = NewRepo(std::move(owned));
  ASSERT_TRUE(repo);
  std::mt19937_64 rng(17);
  std::vector<uint8_t> disk(80 << 20);  // random: 5 packs
  for (auto& b : disk) b = uint8_t(rng());
  auto w = StartOneDisk(*repo, disk.size());
  ASSERT_TRUE(w);
  uint64_t most_held = 0;
  for (uint64_t c : AllChunks(disk.size())) {
    ASSERT_TRUE(
        w->writer->WriteChunk(w->index, c * kChunk, {disk.data() + c * kChunk, kChunk}).ok());
    most_held = std::max<uint64_t>(most_held, (c + 1) * kChunk - backend->appended());
  }
  auto p = w->writer->Commit();
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_LE(backend->largest(), size_t(4 << 20));
  EXPECT_LE(most_held, uint64_t(20 << 20)) << "held unwritten: whole packs in memory";
  EXPECT_GE(backend->appended(), disk.size());
  EXPECT_EQ(Restore(*repo, *p), disk);
  auto check = Check(*repo);
  ASSERT_TRUE(check);
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  size_t packs = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "repo/packs"))
    packs += e.is_regular_file();
  EXPECT_GE(packs, 5u);
  EXPECT_TRUE(std::filesystem::is_empty(dir / "repo/tmp"));
}

}  // namespace
}  // namespace vmbackup::repo
