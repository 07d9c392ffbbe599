#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace vmbackup {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kAlreadyExists: return "already exists";
    case ErrorCode::kCorruption: return "corruption";
    case ErrorCode::kNotSupported: return "not supported";
    case ErrorCode::kIOError: return "I/O error";
    case ErrorCode::kProtocol: return "protocol error";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kPermissionDenied: return "permission denied";
    case ErrorCode::kInternal: return "internal error";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kLocked: return "locked";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kNoRepository: return "no repository";
  }
  return "unknown";
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(ErrorCodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

Status InvalidArgumentError(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
Status NotFoundError(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
Status AlreadyExistsError(std::string m) { return {ErrorCode::kAlreadyExists, std::move(m)}; }
Status CorruptionError(std::string m) { return {ErrorCode::kCorruption, std::move(m)}; }
Status NotSupportedError(std::string m) { return {ErrorCode::kNotSupported, std::move(m)}; }
Status IOError(std::string m) { return {ErrorCode::kIOError, std::move(m)}; }
Status ProtocolError(std::string m) { return {ErrorCode::kProtocol, std::move(m)}; }
Status UnavailableError(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
Status CancelledError(std::string m) { return {ErrorCode::kCancelled, std::move(m)}; }
Status PermissionDeniedError(std::string m) { return {ErrorCode::kPermissionDenied, std::move(m)}; }
Status InternalError(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }
Status FailedPreconditionError(std::string m) {
  return {ErrorCode::kFailedPrecondition, std::move(m)};
}
Status LockedError(std::string m) { return {ErrorCode::kLocked, std::move(m)}; }
Status UnauthenticatedError(std::string m) { return {ErrorCode::kUnauthenticated, std::move(m)}; }
Status NoRepositoryError(std::string m) { return {ErrorCode::kNoRepository, std::move(m)}; }

Status PosixError(std::string_view context, int err) {
  std::string m(context);
  m += ": ";
  m += std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR: return NotFoundError(std::move(m));
    case EACCES:
    case EPERM:
    case EROFS: return PermissionDeniedError(std::move(m));
    case EEXIST: return AlreadyExistsError(std::move(m));
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return IOError(std::move(m));
    case EAGAIN:
    case EINTR: return UnavailableError(std::move(m));
    default: return IOError(std::move(m));
  }
}

}  // namespace vmbackup
