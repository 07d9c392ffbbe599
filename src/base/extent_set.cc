#include "base/extent_set.h"

#include <algorithm>

namespace vmbackup {

ExtentSet::ExtentSet(std::initializer_list<Extent> extents) {
  for (const Extent& e : extents) Add(e);
}

void ExtentSet::Add(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t start = offset, end = offset + length;
  // First interval that could touch [start, end): the one starting at or before start.
  auto it = map_.upper_bound(start);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) it = prev;
  }
  while (it != map_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = map_.erase(it);
  }
  map_.emplace(start, end);
}

void ExtentSet::Add(const ExtentSet& other) {
  for (const auto& [s, e] : other.map_) Add(s, e - s);
}

void ExtentSet::Subtract(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t start = offset, end = offset + length;
  auto it = map_.upper_bound(start);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second > start) it = prev;
  }
  while (it != map_.end() && it->first < end) {
    uint64_t s = it->first, e = it->second;
    it = map_.erase(it);
    if (s < start) map_.emplace(s, start);
    if (e > end) {
      map_.emplace(end, e);
      break;
    }
  }
}

void ExtentSet::Subtract(const ExtentSet& other) {
  for (const auto& [s, e] : other.map_) Subtract(s, e - s);
}

ExtentSet ExtentSet::Intersect(const ExtentSet& other) const {
  ExtentSet out;
  auto a = map_.begin();
  auto b = other.map_.begin();
  while (a != map_.end() && b != other.map_.end()) {
    uint64_t s = std::max(a->first, b->first);
    uint64_t e = std::min(a->second, b->second);
    if (s < e) out.map_.emplace_hint(out.map_.end(), s, e);
    if (a->second < b->second)
      ++a;
    else
      ++b;
  }
  return out;
}

ExtentSet ExtentSet::Clip(uint64_t offset, uint64_t length) const {
  ExtentSet window;
  window.Add(offset, length);
  return Intersect(window);
}

ExtentSet ExtentSet::AlignOutward(uint64_t grid, uint64_t limit) const {
  ExtentSet out;
  for (const auto& [s, e] : map_) {
    uint64_t as = s - s % grid;
    uint64_t ae = e % grid == 0 ? e : e + (grid - e % grid);
    if (ae < e) ae = UINT64_MAX;  // overflow: clamp, then cap at limit below
    ae = std::min(ae, limit);
    if (as < ae) out.Add(as, ae - as);
  }
  return out;
}

bool ExtentSet::Contains(uint64_t offset, uint64_t length) const {
  if (length == 0) return true;
  auto it = map_.upper_bound(offset);
  if (it == map_.begin()) return false;
  --it;
  return it->first <= offset && it->second >= offset + length;
}

bool ExtentSet::Overlaps(uint64_t offset, uint64_t length) const {
  if (length == 0) return false;
  auto it = map_.lower_bound(offset + length);  // first interval starting at/after range end
  if (it == map_.begin()) return false;
  --it;
  return it->second > offset;
}

uint64_t ExtentSet::total_bytes() const {
  uint64_t t = 0;
  for (const auto& [s, e] : map_) t += e - s;
  return t;
}

std::vector<Extent> ExtentSet::ToVector() const {
  std::vector<Extent> v;
  v.reserve(map_.size());
  for (const auto& [s, e] : map_) v.push_back({s, e - s});
  return v;
}

}  // namespace vmbackup
