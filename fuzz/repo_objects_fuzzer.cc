// Fuzzes the readers of repository objects, which come from storage nobody vouches for: the
// config, key objects, point records, index files, pack trailers, lock objects and restore test
// results. The input's
// first byte picks the object; the rest is its content. Nothing may crash or allocate without
// bound; damage is an error.
#include <cstdlib>
#include <memory>

#include "repo/index.h"
#include "repo/lock.h"
#include "repo/pack.h"
#include "repo/point.h"
#include "repo/repository.h"
#include "repo/restore_tests.h"
#include "storage/mem_backend.h"

using namespace vmbackup;

namespace {

// A plain repository, made once; each input is stored as one more object of it.
std::unique_ptr<repo::Repository>& Base() {
  static std::unique_ptr<repo::Repository> repo = [] {
    auto b = std::make_unique<storage::MemBackend>();
    if (!repo::Repository::Init(*b, {}).ok()) std::abort();
    return std::move(*repo::Repository::Open(std::move(b), {}));
  }();
  return repo;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t kind = data[0] % 7;
  std::span<const uint8_t> body(data + 1, size - 1);
  repo::Repository& r = *Base();
  switch (kind) {
    case 0: {  // a config (and a key object beside it)
      auto b = std::make_unique<storage::MemBackend>();
      (void)b->Save({storage::ObjectType::kConfig, "config"}, body);
      (void)b->Save({storage::ObjectType::kKey, "k"}, body);
      (void)repo::Repository::Open(std::move(b), {"", std::string("pass")});
      break;
    }
    case 1: {  // a point record
      const std::string id = "20261122T000000.000000Z-fuzz0000";
      (void)r.backend().Delete({storage::ObjectType::kPoint, id});
      (void)r.backend().Save({storage::ObjectType::kPoint, id}, body);
      auto p = repo::LoadPoint(r, id);
      if (p && !p->disks.empty()) {
        auto reader = repo::PointDiskReader::Open(r, *p, 0);
        std::vector<uint8_t> buf(4096);
        if (reader && (*reader)->capacity() >= buf.size()) (void)(*reader)->Read(0, buf);
      }
      break;
    }
    case 2: {  // an index file, decoded in its own memory and loaded into an index
      (void)repo::Index::DecodeFile(r.codec(), body);
      auto entries =
          repo::Index::DecodeEntries(r.codec(), std::vector<uint8_t>(body.begin(), body.end()));
      if (entries && entries->size() > 0) {
        const repo::PackEntry first = entries->at(0);
        repo::Index index;
        index.AddAll(std::move(*entries), nullptr);
        if (!index.Find(first.id)) std::abort();  // an entry loaded is found
        index.Remove(first.id);
        if (index.Find(first.id)) std::abort();
      }
      break;
    }
    case 3: {  // a pack (its trailer)
      const std::string name(64, 'a');
      (void)r.backend().Delete({storage::ObjectType::kPack, name});
      (void)r.backend().Save({storage::ObjectType::kPack, name}, body);
      auto id = repo::Id::FromHex(name);
      if (id) (void)repo::ReadPackEntries(r.backend(), r.codec(), *id);
      break;
    }
    case 4: {  // a lock object
      storage::MemBackend b;
      (void)b.Save({storage::ObjectType::kLock, "l"}, body);
      auto locks = repo::ListLocks(b);
      if (locks)
        for (const auto& l : *locks) (void)repo::DescribeLock(l);
      break;
    }
    case 5:  // a stored blob under the repository's codec
      (void)r.codec().Decode(body, body.subspan(0, std::min<size_t>(body.size(), 33)), 1 << 20);
      break;
    case 6: {  // a restore test's result, stored as is and wrapped as a blob
      const std::string name = "20261122T000000.000000Z-fuzz0000.20261122T010000Z";
      for (const auto& content :
           {std::vector<uint8_t>(body.begin(), body.end()), r.codec().Encode(body, [&] {
              const std::string aad = "vmbackup test " + name;
              return std::vector<uint8_t>(aad.begin(), aad.end());
            }())}) {
        (void)r.backend().Delete({storage::ObjectType::kTest, name});
        (void)r.backend().Save({storage::ObjectType::kTest, name}, content);
        auto t = repo::LoadRestoreTest(r, name);
        if (t && t->point != "20261122T000000.000000Z-fuzz0000") std::abort();
        (void)repo::RestoreTests(r, "");
      }
      break;
    }
  }
  return 0;
}
