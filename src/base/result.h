// Result<T>: a value or a non-ok Status, shaped like std::expected (C++23) so that a later
// switch is mechanical: has_value(), value(), error(), operator*, operator->.
#pragma once

#include <cassert>
#include <optional>
#include <utility>

#include "base/status.h"

namespace vmbackup {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit like std::expected
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = InternalError("Result constructed from an ok Status");
  }

  bool has_value() const { return value_.has_value(); }
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return *value_;
  }
  const T& value() const& {
    assert(has_value());
    return *value_;
  }
  T&& value() && {
    assert(has_value());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The error; ok when a value is held.
  const Status& error() const { return status_; }
  Status status() const { return status_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace vmbackup

#define VMBACKUP_CONCAT_INNER(a, b) a##b
#define VMBACKUP_CONCAT(a, b) VMBACKUP_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define VMBACKUP_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::vmbackup::Status vmbackup_status_ = (expr);        \
    if (!vmbackup_status_.ok()) return vmbackup_status_; \
  } while (0)

// `lhs = value of expr`, or returns its error from the enclosing function.
#define VMBACKUP_ASSIGN_OR_RETURN(lhs, expr) \
  VMBACKUP_ASSIGN_OR_RETURN_IMPL(VMBACKUP_CONCAT(vmbackup_result_, __LINE__), lhs, expr)
#define VMBACKUP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.has_value()) return tmp.error();            \
  lhs = std::move(tmp).value()
