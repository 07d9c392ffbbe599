// Integer fields of repository JSON records, read without undefined behaviour: nlohmann's
// get<int>() of a floating-point value out of range (1e21 in a damaged or hostile record) is
// undefined, so an integer field must hold an integer that fits, or the record is damaged.
// Throws nlohmann::json::type_error (as get<> does), which the readers turn into kCorruption.
#pragma once

#include <limits>
#include <nlohmann/json.hpp>

namespace vmbackup::repo {

template <class T>
T IntField(const nlohmann::json& j) {
  auto bad = [] {
    return nlohmann::json::type_error::create(302, "an integer field is not an integer that fits",
                                              nullptr);
  };
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<T>::max())) throw bad();
    return T(v);
  }
  if (j.is_number_integer()) {
    const auto v = j.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0) throw bad();
      return T(v);
    } else {
      if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max()))
        throw bad();
      return T(v);
    }
  }
  throw bad();
}

// The field `key` of object `j`: at() semantics (missing throws out_of_range).
template <class T>
T IntAt(const nlohmann::json& j, const char* key) {
  return IntField<T>(j.at(key));
}

// The field `key`, or `fallback` when it is absent.
template <class T>
T IntOr(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) ? IntField<T>(j.at(key)) : fallback;
}

}  // namespace vmbackup::repo
