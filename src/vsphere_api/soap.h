// SOAP for the server side of vim25: reading a request envelope (hostile input: bounded, no
// entities, every shape checked) and writing answers and faults as vSphere writes them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "vsphere_api/value.h"
#include "xml/xml.h"

namespace vmbackup::vsphere_api {

inline constexpr size_t kMaxRequestBytes = 4 << 20;

// A call: <Method xmlns="urn:vim25"><_this type="T">V</_this>args...</Method>.
struct SoapRequest {
  std::shared_ptr<xml::Document> doc;
  std::string method;
  MoRef this_ref;
  xml::Node call;  // the method element; its children are the arguments
  xml::Node Arg(std::string_view name) const { return call.child(name); }
};

// kInvalidArgument naming what is wrong for anything that is not one well-formed call.
Result<SoapRequest> ParseSoapRequest(std::string_view body);

// A vim25 fault: its type ("InvalidLogin"), the message, and the fault's own fields as XML
// (e.g. <obj type="VirtualMachine">vm-1</obj> for ManagedObjectNotFound).
struct Fault {
  std::string type;
  std::string message;
  std::string fields;
};

// A value or the fault that stands in its place (the server's Result).
template <class T>
class FaultOr {
 public:
  FaultOr(T value) : value_(std::move(value)) {}      // NOLINT: implicit, as Result
  FaultOr(Fault fault) : fault_(std::move(fault)) {}  // NOLINT
  bool ok() const { return value_.has_value(); }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  T& operator*() { return *value_; }
  const Fault& fault() const { return fault_; }

 private:
  std::optional<T> value_;
  Fault fault_;
};

// The fault for an error of the host library, about `obj`: kNotFound is
// ManagedObjectNotFound, kFailedPrecondition InvalidState, kInvalidArgument InvalidArgument,
// kLocked TaskInProgress, kNotSupported NotSupported, anything else SystemError.
Fault FaultOf(const Status& s, const MoRef& obj);

Fault InvalidRequestFault(std::string message);
Fault NotAuthenticatedFault();
Fault ManagedObjectNotFoundFault(const MoRef& obj);
Fault InvalidArgumentFault(std::string message, std::string property = "");
Fault InvalidPropertyFault(const std::string& name);
Fault InvalidPowerStateFault(std::string message, std::string requested, std::string existing);
Fault MethodNotFoundFault(const MoRef& receiver, const std::string& method);
Fault FileFault(std::string message, const std::string& file);
Fault InvalidStateFault(std::string message);
Fault TaskInProgressFault(std::string message, const MoRef& task);
Fault SystemErrorFault(std::string message);

// The envelope of an answer: <MethodResponse><returnval>...</returnval></MethodResponse>;
// `returnvals` holds zero or more returnval elements already written.
std::string AnswerEnvelope(const std::string& method, const std::string& returnvals);
// The envelope of a fault (sent with HTTP 500).
std::string FaultEnvelope(const Fault& fault);
// The fault as the LocalizedMethodFault of a TaskInfo.error.
Value LocalizedFault(const Fault& fault);

}  // namespace vmbackup::vsphere_api
