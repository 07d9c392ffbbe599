#include "hv/vsphere/vim_client.h"

#include <chrono>

#include "base/strings.h"

namespace vmbackup::hv::vsphere {
namespace {

using xml::Escape;
using xml::Node;

constexpr const char* kEnvelopeHead =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
    "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>";
constexpr const char* kEnvelopeTail = "</soapenv:Body></soapenv:Envelope>";

std::string El(const char* name, const std::string& text) {
  return std::string("<") + name + ">" + Escape(text) + "</" + name + ">";
}

// The fault type of a SOAP fault: the detail element's xsi:type, or its name without "Fault".
std::string FaultType(Node fault) {
  Node detail = fault.child("detail");
  for (Node d : detail.children()) {
    std::string t = d.xsi_type();
    if (t.empty()) {
      t = d.name();
      if (t.size() > 5 && t.compare(t.size() - 5, 5, "Fault") == 0) t.resize(t.size() - 5);
    }
    return t;
  }
  return "";
}

}  // namespace

std::string MoRef::Xml(const char* element) const {
  return std::string("<") + element + " type=\"" + Escape(type) + "\">" + Escape(value) + "</" +
         element + ">";
}

MoRef MoRef::From(Node n) { return MoRef{n.attr("type").value_or(""), n.text()}; }

Node ObjectContent::Get(std::string_view name) const {
  for (const auto& [n, v] : props)
    if (n == name) return v;
  return Node();
}

Status FaultStatus(const std::string& type, const std::string& message,
                   const std::string& context) {
  std::string text = context + ": " + (message.empty() ? type : message) +
                     (type.empty() ? "" : " (vSphere fault " + type + ")");
  if (type == "InvalidLogin" || type == "NotAuthenticated" || type == "NoPermission")
    return UnauthenticatedError(text);
  if (type == "ManagedObjectNotFound") return NotFoundError(text);
  if (type == "InvalidPowerState" || type == "InvalidState" || type == "InvalidDatastoreState")
    return FailedPreconditionError(text);
  if (type == "TaskInProgress") return LockedError(text);
  if (type == "MethodNotFound" || type == "NotSupported" || type == "NotImplemented")
    return NotSupportedError(text);
  return ProtocolError(text);
}

Result<std::unique_ptr<VimClient>> VimClient::Connect(const Options& options) {
  std::unique_ptr<VimClient> c(new VimClient(options));
  VMBACKUP_ASSIGN_OR_RETURN(
      c->http_, http::Client::Create(options.url, options.tls, options.timeout_seconds));
  VMBACKUP_ASSIGN_OR_RETURN(auto doc, c->Call("RetrieveServiceContent",
                                              {"ServiceInstance", "ServiceInstance"}, "", nullptr));
  Node sc = ReturnVal(*doc);
  c->root_folder_ = MoRef::From(sc.child("rootFolder"));
  c->property_collector_ = MoRef::From(sc.child("propertyCollector"));
  c->search_index_ = MoRef::From(sc.child("searchIndex"));
  c->view_manager_ = MoRef::From(sc.child("viewManager"));
  c->session_manager_ = MoRef::From(sc.child("sessionManager"));
  c->file_manager_ = MoRef::From(sc.child("fileManager"));
  c->virtual_disk_manager_ = MoRef::From(sc.child("virtualDiskManager"));
  c->authorization_manager_ = MoRef::From(sc.child("authorizationManager"));
  c->about_ = sc.path("about/fullName").text();
  if (std::string v = sc.path("about/apiVersion").text(); !v.empty()) c->api_version_ = v;
  if (c->session_manager_.empty() || c->property_collector_.empty()) {
    return ProtocolError(options.url +
                         ": the ServiceContent names no SessionManager or "
                         "PropertyCollector: not a vSphere API endpoint");
  }
  VMBACKUP_RETURN_IF_ERROR(c->Login());
  if (options.keepalive_seconds > 0) c->keepalive_ = std::thread([p = c.get()] { p->KeepAlive(); });
  return c;
}

VimClient::~VimClient() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  if (logged_in_) Logout().IgnoreError();
}

void VimClient::KeepAlive() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    if (stop_cv_.wait_for(l, std::chrono::duration<double>(options_.keepalive_seconds),
                          [this] { return stop_; }))
      return;
    l.unlock();
    // Any call keeps the session alive; CurrentTime is the cheapest. A session that was
    // dropped anyway is logged in again by the job's next call (Invoke), not from here.
    std::string ignored;
    Call("CurrentTime", {"ServiceInstance", "ServiceInstance"}, "", &ignored)
        .status()
        .IgnoreError();
    l.lock();
  }
}

Status VimClient::Login() {
  std::string fault;
  auto doc = Call("Login", session_manager_,
                  El("userName", options_.user) + El("password", options_.password), &fault);
  SetLastFault(fault);
  if (!doc) {
    if (fault == "InvalidLogin") {
      return UnauthenticatedError("vSphere " + options_.url + ": login as " + options_.user +
                                  " failed: wrong user name or password (InvalidLogin)");
    }
    return doc.error();
  }
  logged_in_ = true;
  ++logins_;
  return Status::Ok();
}

Status VimClient::Logout() {
  if (!logged_in_) return Status::Ok();
  logged_in_ = false;
  return Call("Logout", session_manager_, "", nullptr).status();
}

std::string VimClient::cookies() {
  std::lock_guard<std::mutex> l(mu_);
  return http_->cookies();
}

Result<std::string> VimClient::RenewSession(const std::string& stale_cookies) {
  std::lock_guard<std::mutex> l(renew_mu_);
  if (const std::string now = cookies(); now != stale_cookies) return now;
  VMBACKUP_RETURN_IF_ERROR(Login().WithContext("logging in again for the datastore file service"));
  return cookies();
}

std::string VimClient::last_fault() const {
  std::lock_guard<std::mutex> l(fault_mu_);
  return last_fault_;
}

void VimClient::SetLastFault(const std::string& fault) {
  std::lock_guard<std::mutex> l(fault_mu_);
  last_fault_ = fault;
}

Result<std::shared_ptr<xml::Document>> VimClient::Call(const std::string& method,
                                                       const MoRef& target, const std::string& args,
                                                       std::string* fault) {
  if (fault) fault->clear();
  http::Request req;
  req.method = "POST";
  req.path = "/sdk";
  req.headers["Content-Type"] = "text/xml; charset=utf-8";
  req.headers["SOAPAction"] = "\"urn:vim25/" + api_version_ + "\"";
  req.body = std::string(kEnvelopeHead) + "<" + method + " xmlns=\"urn:vim25\">" +
             target.Xml("_this") + args + "</" + method + ">" + kEnvelopeTail;
  const std::string context = method + " on " + target.Describe();
  Result<http::Response> r = [&] {
    std::lock_guard<std::mutex> l(mu_);
    return http_->Send(req);
  }();
  if (!r) return Status(r.error().code(), "vSphere " + context + ": " + r.error().message());
  return ParseSoapAnswer(r->status, r->body, "vSphere " + context + " (" + options_.url + ")",
                         fault);
}

Result<std::shared_ptr<xml::Document>> ParseSoapAnswer(long http_status, std::string_view body,
                                                       const std::string& context,
                                                       std::string* fault_type) {
  if (http_status != 200 && http_status != 500)
    return ProtocolError(StrFormat("%s: HTTP %ld", context.c_str(), http_status));
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc,
                            xml::Document::Parse(body, "the answer to " + context));
  Node envelope = doc.root();
  Node soap_body = envelope.child("Body");
  if (envelope.name() != "Envelope" || !soap_body)
    return ProtocolError(context + ": the answer is not a SOAP envelope");
  if (Node fault = soap_body.child("Fault")) {
    std::string type = FaultType(fault);
    if (fault_type) *fault_type = type;
    return FaultStatus(type, fault.child("faultstring").text(), context);
  }
  if (http_status != 200) return ProtocolError(context + ": HTTP 500 without a fault");
  return std::make_shared<xml::Document>(std::move(doc));
}

Result<std::shared_ptr<xml::Document>> VimClient::Invoke(const std::string& method,
                                                         const MoRef& target,
                                                         const std::string& args) {
  std::string fault;
  auto r = Call(method, target, args, &fault);
  if (!r && fault == "NotAuthenticated" && method != "Login") {
    // The session ended under us (a timeout, a restart, an administrator): log in again and
    // repeat the call once.
    VMBACKUP_RETURN_IF_ERROR(Login().WithContext("logging in again after NotAuthenticated"));
    r = Call(method, target, args, &fault);
  }
  SetLastFault(fault);
  return r;
}

Node VimClient::ReturnVal(const xml::Document& doc) {
  Node body = doc.root().child("Body");
  for (Node response : body.children()) return response.child("returnval");
  return Node();
}

namespace {}  // namespace

void ReadObjectContents(Node returnval, std::vector<ObjectContent>* out) {
  for (Node o : returnval.children("objects")) {
    ObjectContent oc;
    oc.obj = MoRef::From(o.child("obj"));
    for (Node p : o.children("propSet"))
      oc.props.emplace_back(p.child("name").text(), p.child("val"));
    out->push_back(std::move(oc));
  }
}

namespace {

std::string PropSpec(const std::string& type, const std::vector<std::string>& paths) {
  std::string s = "<propSet>" + El("type", type);
  for (const auto& p : paths) s += El("pathSet", p);
  return s + "</propSet>";
}

}  // namespace

Result<PropertyAnswer> VimClient::RetrieveProperties(const std::string& type,
                                                     const std::vector<MoRef>& objects,
                                                     const std::vector<std::string>& paths) {
  std::string spec = "<specSet>" + PropSpec(type, paths);
  for (const MoRef& o : objects) spec += "<objectSet>" + o.Xml("obj") + "</objectSet>";
  spec += "</specSet><options></options>";
  PropertyAnswer answer;
  VMBACKUP_ASSIGN_OR_RETURN(auto doc, Invoke("RetrievePropertiesEx", property_collector_, spec));
  for (;;) {
    Node rv = ReturnVal(*doc);
    ReadObjectContents(rv, &answer.objects);
    answer.docs.push_back(doc);
    const std::string token = rv.child("token").text();
    if (token.empty()) break;
    VMBACKUP_ASSIGN_OR_RETURN(
        doc, Invoke("ContinueRetrievePropertiesEx", property_collector_, El("token", token)));
  }
  return answer;
}

Result<PropertyAnswer> VimClient::RetrieveAll(const std::string& type,
                                              const std::vector<std::string>& paths) {
  VMBACKUP_ASSIGN_OR_RETURN(auto view_doc, Invoke("CreateContainerView", view_manager_,
                                                  root_folder_.Xml("container") + El("type", type) +
                                                      "<recursive>true</recursive>"));
  const MoRef view = MoRef::From(ReturnVal(*view_doc));
  std::string spec = "<specSet>" + PropSpec(type, paths) + "<objectSet>" + view.Xml("obj") +
                     "<skip>true</skip><selectSet xsi:type=\"TraversalSpec\">" +
                     El("name", "view") + El("type", "ContainerView") + El("path", "view") +
                     "<skip>false</skip></selectSet></objectSet></specSet><options></options>";
  PropertyAnswer answer;
  auto doc = Invoke("RetrievePropertiesEx", property_collector_, spec);
  while (doc) {
    Node rv = ReturnVal(**doc);
    ReadObjectContents(rv, &answer.objects);
    answer.docs.push_back(*doc);
    const std::string token = rv.child("token").text();
    if (token.empty()) break;
    doc = Invoke("ContinueRetrievePropertiesEx", property_collector_, El("token", token));
  }
  Invoke("DestroyView", view).status().IgnoreError();
  if (!doc) return doc.error();
  return answer;
}

Result<MoRef> VimClient::FindByInventoryPath(const std::string& path) {
  VMBACKUP_ASSIGN_OR_RETURN(
      auto doc, Invoke("FindByInventoryPath", search_index_, El("inventoryPath", path)));
  MoRef r = MoRef::From(ReturnVal(*doc));
  if (r.empty())
    return NotFoundError("vSphere " + options_.url + ": nothing at inventory path " + path);
  return r;
}

Result<MoRef> VimClient::FindVmByUuid(const std::string& uuid, bool instance_uuid) {
  VMBACKUP_ASSIGN_OR_RETURN(auto doc,
                            Invoke("FindByUuid", search_index_,
                                   El("uuid", uuid) + "<vmSearch>true</vmSearch>" +
                                       El("instanceUuid", instance_uuid ? "true" : "false")));
  MoRef r = MoRef::From(ReturnVal(*doc));
  if (r.empty()) return NotFoundError("vSphere " + options_.url + ": no VM with uuid " + uuid);
  return r;
}

Result<VimClient::TaskResult> VimClient::WaitForTask(const MoRef& task, const std::string& what,
                                                     double limit_seconds) {
  const auto start = std::chrono::steady_clock::now();
  double delay = 0.02;
  for (;;) {
    VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, RetrieveProperties("Task", {task}, {"info"}));
    if (a.objects.empty())
      return NotFoundError("vSphere: task " + task.value + " (" + what + ") is gone");
    Node info = a.objects[0].Get("info");
    const std::string state = info.child("state").text();
    if (state == "success") return TaskResult{a.docs.back(), info.child("result")};
    if (state == "error") {
      Node err = info.child("error");
      std::string type = err.child("fault").xsi_type();
      if (type.empty()) type = err.child("fault").name();
      SetLastFault(type);
      return FaultStatus(type, err.child("localizedMessage").text(), "vSphere " + what);
    }
    if (state != "queued" && state != "running") {
      return ProtocolError("vSphere " + what + ": task " + task.value + " in unknown state '" +
                           state + "'");
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > limit_seconds) {
      Invoke("CancelTask", task).status().IgnoreError();
      return IOError(StrFormat("vSphere %s: task %s still %s after %.0f s (cancelled)",
                               what.c_str(), task.value.c_str(), state.c_str(), elapsed));
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    delay = std::min(1.0, delay * 2);
  }
}

Result<std::string> VimClient::SessionKey() {
  VMBACKUP_ASSIGN_OR_RETURN(
      PropertyAnswer a,
      RetrieveProperties("SessionManager", {session_manager_}, {"currentSession"}));
  if (a.objects.empty()) return NotFoundError("vSphere: no current session");
  return a.objects[0].Get("currentSession").child("key").text();
}

}  // namespace vmbackup::hv::vsphere
