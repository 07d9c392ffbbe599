// ExtentSet: a set of bytes kept as sorted, disjoint, non-adjacent half-open intervals
// [offset, offset+length). Used for allocation maps, CBT changed areas and repository ranges.
//
// Not thread-safe. Memory is proportional to the number of disjoint intervals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace vmbackup {

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const Extent&) const = default;
};

class ExtentSet {
 public:
  ExtentSet() = default;
  ExtentSet(std::initializer_list<Extent> extents);

  // Adds [offset, offset+length); merges with overlapping and touching intervals.
  // A length of zero is ignored. offset+length must not overflow (callers check).
  void Add(uint64_t offset, uint64_t length);
  void Add(const Extent& e) { Add(e.offset, e.length); }
  void Add(const ExtentSet& other);

  // Removes [offset, offset+length), splitting intervals as needed.
  void Subtract(uint64_t offset, uint64_t length);
  void Subtract(const ExtentSet& other);

  // The bytes present in both sets.
  ExtentSet Intersect(const ExtentSet& other) const;
  // The bytes of this set inside [offset, offset+length).
  ExtentSet Clip(uint64_t offset, uint64_t length) const;

  // Every interval widened outward to multiples of `grid` (non-zero), then merged; the end is
  // capped at `limit` (e.g. the disk capacity).
  ExtentSet AlignOutward(uint64_t grid, uint64_t limit = UINT64_MAX) const;

  bool Contains(uint64_t offset, uint64_t length) const;  // every byte of the range
  bool Overlaps(uint64_t offset, uint64_t length) const;  // at least one byte
  bool empty() const { return map_.empty(); }
  size_t interval_count() const { return map_.size(); }
  uint64_t total_bytes() const;
  void clear() { map_.clear(); }

  std::vector<Extent> ToVector() const;

  // Iteration in ascending order, yielding Extent values.
  class const_iterator {
   public:
    using Base = std::map<uint64_t, uint64_t>::const_iterator;
    explicit const_iterator(Base it) : it_(it) {}
    Extent operator*() const { return {it_->first, it_->second - it_->first}; }
    const_iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return it_ == o.it_; }
    bool operator!=(const const_iterator& o) const { return it_ != o.it_; }

   private:
    Base it_;
  };
  const_iterator begin() const { return const_iterator(map_.begin()); }
  const_iterator end() const { return const_iterator(map_.end()); }

  bool operator==(const ExtentSet&) const = default;

 private:
  std::map<uint64_t, uint64_t> map_;  // start -> end (exclusive)
};

}  // namespace vmbackup
