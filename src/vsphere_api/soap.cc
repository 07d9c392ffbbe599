#include "vsphere_api/soap.h"

#include "base/strings.h"

namespace vmbackup::vsphere_api {
namespace {

using xml::Escape;

constexpr const char* kHead =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<soapenv:Envelope xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\" "
    "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
    "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n<soapenv:Body>\n";
constexpr const char* kTail = "\n</soapenv:Body>\n</soapenv:Envelope>";
constexpr const char* kSoapNs = "http://schemas.xmlsoap.org/soap/envelope/";

std::string Ref(const char* element, const MoRef& r) {
  return std::string("<") + element + " type=\"" + Escape(r.type) + "\">" + Escape(r.value) + "</" +
         element + ">";
}

std::string El(const char* element, const std::string& text) {
  return std::string("<") + element + ">" + Escape(text) + "</" + element + ">";
}

}  // namespace

Result<SoapRequest> ParseSoapRequest(std::string_view body) {
  if (body.size() > kMaxRequestBytes)
    return InvalidArgumentError(
        StrFormat("the request has %zu bytes, more than %zu", body.size(), kMaxRequestBytes));
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(body, "the SOAP request"));
  SoapRequest r;
  r.doc = std::make_shared<xml::Document>(std::move(doc));
  xml::Node env = r.doc->root();
  if (env.name() != "Envelope" || env.ns() != kSoapNs)
    return InvalidArgumentError("the request is not a SOAP 1.1 envelope");
  xml::Node soap_body = env.child("Body");
  if (!soap_body || soap_body.ns() != kSoapNs)
    return InvalidArgumentError("the SOAP envelope has no Body");
  auto calls = soap_body.children();
  if (calls.size() != 1)
    return InvalidArgumentError(
        StrFormat("the SOAP Body holds %zu elements, not one call", calls.size()));
  r.call = calls[0];
  r.method = r.call.name();
  xml::Node self = r.call.child("_this");
  if (!self) return InvalidArgumentError(r.method + ": no _this");
  r.this_ref = {self.attr("type").value_or(""), self.text()};
  if (r.this_ref.type.empty() || r.this_ref.value.empty())
    return InvalidArgumentError(r.method + ": _this needs a type and a value");
  return r;
}

Fault FaultOf(const Status& s, const MoRef& obj) {
  switch (s.code()) {
    case ErrorCode::kNotFound: return {"ManagedObjectNotFound", s.message(), Ref("obj", obj)};
    case ErrorCode::kFailedPrecondition: return InvalidStateFault(s.message());
    case ErrorCode::kInvalidArgument: return InvalidArgumentFault(s.message());
    case ErrorCode::kLocked: return {"TaskInProgress", s.message(), ""};
    case ErrorCode::kNotSupported: return {"NotSupported", s.message(), ""};
    default: return SystemErrorFault(s.message());
  }
}

Fault InvalidRequestFault(std::string message) {
  return {"InvalidRequest", std::move(message), ""};
}

Fault NotAuthenticatedFault() {
  return {"NotAuthenticated", "The session is not authenticated.",
          "<object type=\"Folder\">ha-folder-root</object><privilegeId>System.View</privilegeId>"};
}

Fault ManagedObjectNotFoundFault(const MoRef& obj) {
  return {"ManagedObjectNotFound",
          "The object '" + obj.type + ":" + obj.value +
              "' has already been deleted or has not "
              "been completely created",
          Ref("obj", obj)};
}

Fault InvalidArgumentFault(std::string message, std::string property) {
  return {"InvalidArgument", std::move(message),
          property.empty() ? "" : El("invalidProperty", property)};
}

Fault InvalidPropertyFault(const std::string& name) {
  return {"InvalidProperty", "no property " + name, El("name", name)};
}

Fault InvalidPowerStateFault(std::string message, std::string requested, std::string existing) {
  return {
      "InvalidPowerState", std::move(message),
      (requested.empty() ? "" : El("requestedState", requested)) + El("existingState", existing)};
}

Fault MethodNotFoundFault(const MoRef& receiver, const std::string& method) {
  return {"MethodNotFound", "no method " + method + " on " + receiver.type,
          Ref("receiver", receiver) + El("method", method)};
}

Fault FileFault(std::string message, const std::string& file) {
  return {"FileFault", std::move(message), El("file", file)};
}

Fault InvalidStateFault(std::string message) { return {"InvalidState", std::move(message), ""}; }

Fault TaskInProgressFault(std::string message, const MoRef& task) {
  return {"TaskInProgress", std::move(message), Ref("task", task)};
}

Fault SystemErrorFault(std::string message) {
  return {"SystemError", message, El("reason", message)};
}

std::string AnswerEnvelope(const std::string& method, const std::string& returnvals) {
  return std::string(kHead) + "<" + method + "Response xmlns=\"urn:vim25\">" + returnvals + "</" +
         method + "Response>" + kTail;
}

std::string FaultEnvelope(const Fault& fault) {
  return std::string(kHead) + "<soapenv:Fault><faultcode>ServerFaultCode</faultcode>" +
         El("faultstring", fault.message) + "<detail><" + fault.type +
         "Fault xmlns=\"urn:vim25\" xsi:type=\"" + fault.type + "\">" + fault.fields + "</" +
         fault.type + "Fault></detail></soapenv:Fault>" + kTail;
}

Value LocalizedFault(const Fault& fault) {
  Value v = Value::Object("LocalizedMethodFault");
  v.Set("fault", Value::Object(fault.type).SetRawFields(fault.fields));
  v.Set("localizedMessage", Value::String(fault.message));
  return v;
}

}  // namespace vmbackup::vsphere_api
