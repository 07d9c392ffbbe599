// Status: the error value every fallible vmbackup function returns.
//
// A Status is either ok (cheap: no allocation) or carries an ErrorCode and a message. Each layer
// that passes an error up prepends one short context fragment with WithContext(), so a message
// reads outermost first: "vmdk cat a.vmdk: extent a-s001.vmdk: grain table 3: past end of file".
//
// vmbackup's own code throws no exceptions; errors are values.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace vmbackup {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,     // the caller asked for something malformed
  kNotFound,            // a named object (file, VM, point) does not exist
  kAlreadyExists,       // creating something that is there already
  kCorruption,          // bytes read from disk or the wire break the format
  kNotSupported,        // a valid feature this build does not implement
  kIOError,             // the operating system failed an I/O call
  kProtocol,            // a peer broke a protocol contract
  kUnavailable,         // transient; the only retryable code
  kCancelled,           // stopped on request (signal, user)
  kPermissionDenied,    // the OS or a peer refused access
  kInternal,            // a bug in vmbackup
  kFailedPrecondition,  // the system is not in a state the operation needs (VM powered on)
  kLocked,              // another process holds what the operation needs (a lock, a job)
  kUnauthenticated,     // a key or credential is missing or wrong
  kNoRepository,        // the repository named does not exist
};

// Short lower-case name of a code ("corruption"), for messages and JSON.
std::string_view ErrorCodeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retryable() const { return code_ == ErrorCode::kUnavailable; }

  // Returns this status with "context: " put before the message; ok stays ok.
  Status WithContext(std::string_view context) const;

  // "corruption: <message>", or "ok".
  std::string ToString() const;

  // Marks a deliberately ignored error; always add a comment saying why.
  void IgnoreError() const {}

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status CorruptionError(std::string message);
Status NotSupportedError(std::string message);
Status IOError(std::string message);
Status ProtocolError(std::string message);
Status UnavailableError(std::string message);
Status CancelledError(std::string message);
Status PermissionDeniedError(std::string message);
Status InternalError(std::string message);
Status FailedPreconditionError(std::string message);
Status LockedError(std::string message);
Status UnauthenticatedError(std::string message);
Status NoRepositoryError(std::string message);

// The one place errno becomes a Status: "context: strerror(errno)", with a code chosen from
// errno (ENOENT -> kNotFound, EACCES/EPERM -> kPermissionDenied, EEXIST -> kAlreadyExists, ...).
Status PosixError(std::string_view context, int err);

}  // namespace vmbackup
