#include "storage/block_cache_backend.h"

#include <algorithm>
#include <cstring>

namespace vmbackup::storage {

BlockCacheBackend::BlockCacheBackend(std::unique_ptr<Backend> inner, BlockCacheOptions options)
    : inner_(std::move(inner)), options_(options) {
  spares_.limit = options_.max_blocks + size_t(options_.prefetch_threads) + 4;
  for (int i = 0; i < options_.prefetch_threads; ++i)
    threads_.emplace_back([this] { PrefetchMain(); });
}

BlockCacheBackend::~BlockCacheBackend() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

Status BlockCacheBackend::Save(const ObjectRef& ref, std::span<const uint8_t> data) {
  Status s = inner_->Save(ref, data);
  if (ref.type == ObjectType::kPack) {
    std::lock_guard<std::mutex> l(mu_);
    ForgetLocked(ref.name);
  }
  return s;
}

Status BlockCacheBackend::Delete(const ObjectRef& ref) {
  Status s = inner_->Delete(ref);
  if (ref.type == ObjectType::kPack) {
    std::lock_guard<std::mutex> l(mu_);
    ForgetLocked(ref.name);
  }
  return s;
}

Result<std::vector<uint8_t>> BlockCacheBackend::LoadRange(const ObjectRef& ref, uint64_t offset,
                                                          uint64_t length) {
  // A pack is 16 MiB and a little more; a longer range comes from damaged metadata, and the
  // inner backend checks it against the object's size before it allocates.
  if (ref.type != ObjectType::kPack || length == 0 || length > (64u << 20))
    return inner_->LoadRange(ref, offset, length);
  std::vector<uint8_t> data(length);
  VMBACKUP_RETURN_IF_ERROR(ReadRange(ref, offset, data));
  return data;
}

Status BlockCacheBackend::ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) {
  if (ref.type != ObjectType::kPack || out.empty()) return inner_->ReadRange(ref, offset, out);
  VMBACKUP_RETURN_IF_ERROR(ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t size, PackSize(ref.name));
  if (offset > size || out.size() > size - offset) return inner_->ReadRange(ref, offset, out);
  const uint64_t bs = options_.block_size;
  const uint64_t first = offset / bs, last = (offset + out.size() - 1) / bs;
  // The blocks after the first are asked for at once: a long range costs one round trip.
  if (last > first) Queue(ref.name, first + 1, last, size);
  for (uint64_t k = first; k <= last; ++k) {
    VMBACKUP_ASSIGN_OR_RETURN(std::shared_ptr<const Block> block, Get({ref.name, k}, size));
    const uint64_t from = std::max(offset, k * bs);
    const uint64_t to = std::min(offset + out.size(), k * bs + block->length);
    std::memcpy(out.data() + (from - offset), block->data.data() + (from - k * bs), to - from);
  }
  return Status::Ok();
}

void BlockCacheBackend::Prefetch(const ObjectRef& ref, uint64_t offset, uint64_t length) {
  if (ref.type != ObjectType::kPack || length == 0 || !ValidateObjectName(ref.name).ok()) return;
  auto size = PackSize(ref.name);
  if (!size || offset >= *size) return;  // errors come with the read
  const uint64_t end = std::min(*size, offset + length);
  Queue(ref.name, offset / options_.block_size, (end - 1) / options_.block_size, *size);
}

Result<uint64_t> BlockCacheBackend::PackSize(const std::string& name) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sizes_.find(name);
    if (it != sizes_.end()) return it->second;
  }
  VMBACKUP_ASSIGN_OR_RETURN(ObjectInfo info, inner_->Stat({ObjectType::kPack, name}));
  std::lock_guard<std::mutex> l(mu_);
  sizes_[name] = info.size;
  return info.size;
}

Result<std::shared_ptr<const BlockCacheBackend::Block>> BlockCacheBackend::Get(
    const Key& key, uint64_t object_size) {
  std::shared_ptr<Block> block;
  {
    std::unique_lock<std::mutex> l(mu_);
    auto it = blocks_.find(key);
    if (it != blocks_.end()) {
      block = it->second;
      ++hits_;
      if (block->kept) lru_.splice(lru_.begin(), lru_, block->lru);
      fetched_.wait(l, [&] { return block->state != Block::State::kFetching; });
      if (block->state == Block::State::kFailed) return block->error;
      return std::shared_ptr<const Block>(block);
    }
    block = std::make_shared<Block>(&spares_);
    blocks_[key] = block;
    ++fetches_;
  }
  Fetch(key, object_size, block);
  if (block->state == Block::State::kFailed) return block->error;
  return std::shared_ptr<const Block>(block);
}

void BlockCacheBackend::Fetch(const Key& key, uint64_t object_size,
                              const std::shared_ptr<Block>& block) {
  const uint64_t begin = key.second * options_.block_size;
  std::vector<uint8_t> data = spares_.Take(options_.block_size);
  const size_t length = std::min(options_.block_size, object_size - begin);
  Status s = inner_->ReadRange({ObjectType::kPack, key.first}, begin, {data.data(), length});
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blocks_.find(key);
    const bool ours = it != blocks_.end() && it->second == block;  // not forgotten meanwhile
    block->data = std::move(data);
    if (s.ok()) {
      block->length = length;
      block->state = Block::State::kReady;
      if (ours) {
        lru_.push_front(key);
        block->lru = lru_.begin();
        block->kept = true;
        EvictLocked();
      }
    } else {
      block->error = s;
      block->state = Block::State::kFailed;
      if (ours) blocks_.erase(it);
    }
  }
  fetched_.notify_all();
}

void BlockCacheBackend::Queue(const std::string& name, uint64_t first, uint64_t last,
                              uint64_t object_size) {
  if (threads_.empty()) return;
  bool added = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint64_t k = first; k <= last; ++k) {
      Key key{name, k};
      if (blocks_.count(key)) continue;
      if (std::any_of(queue_.begin(), queue_.end(), [&](const Wanted& w) { return w.key == key; }))
        continue;
      if (queue_.size() >= options_.max_blocks) break;  // far enough ahead
      queue_.push_back({std::move(key), object_size});
      added = true;
    }
  }
  if (added) queued_cv_.notify_all();
}

void BlockCacheBackend::PrefetchMain() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    queued_cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Wanted w = std::move(queue_.front());
    queue_.pop_front();
    if (blocks_.count(w.key)) continue;  // a reader came first
    auto block = std::make_shared<Block>(&spares_);
    blocks_[w.key] = block;
    ++fetches_;
    l.unlock();
    Fetch(w.key, w.object_size, block);
    l.lock();
  }
}

void BlockCacheBackend::ForgetLocked(const std::string& name) {
  sizes_.erase(name);
  for (auto it = blocks_.lower_bound({name, 0}); it != blocks_.end() && it->first.first == name;) {
    if (it->second->kept) {
      lru_.erase(it->second->lru);
      it->second->kept = false;
    }
    it = blocks_.erase(it);  // a fetch under way finishes for its readers only
  }
}

void BlockCacheBackend::EvictLocked() {
  while (lru_.size() > options_.max_blocks) {
    auto it = blocks_.find(lru_.back());
    if (it != blocks_.end()) {
      it->second->kept = false;
      blocks_.erase(it);
    }
    lru_.pop_back();
  }
}

std::vector<uint8_t> BlockCacheBackend::Spares::Take(size_t size) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!free_.empty()) {
      std::vector<uint8_t> b = std::move(free_.back());
      free_.pop_back();
      if (b.size() == size) return b;
    }
  }
  return std::vector<uint8_t>(size);
}

void BlockCacheBackend::Spares::Give(std::vector<uint8_t>&& buffer) {
  if (buffer.empty()) return;
  std::lock_guard<std::mutex> l(mu_);
  if (free_.size() < limit) free_.push_back(std::move(buffer));
}

BlockCacheBackend::CacheStats BlockCacheBackend::cache_stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return {hits_, fetches_, lru_.size()};
}

}  // namespace vmbackup::storage
