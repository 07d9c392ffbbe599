// A client of the vSphere Web Services API (vim25 over SOAP/HTTPS), for the vSphere driver.
//
// It speaks the few dozen methods a VADP-style backup needs, with vSphere's own names: the
// session (RetrieveServiceContent, Login, Logout, a keepalive, and a new Login when the server
// says NotAuthenticated in the middle of a job), the PropertyCollector (RetrievePropertiesEx and
// ContinueRetrievePropertiesEx with tokens), and tasks (polled with a time limit). Answers are
// read by namespace URI and local name, leniently: an element the client does not know is
// skipped, and xsi:type prefixes are resolved (vcsim writes them under its own prefixes).
//
// Faults become Status errors naming the method, the object and the fault type:
//   InvalidLogin, NotAuthenticated   -> kUnauthenticated
//   ManagedObjectNotFound            -> kNotFound
//   InvalidPowerState, InvalidState  -> kFailedPrecondition
//   TaskInProgress                   -> kLocked
//   MethodNotFound, NotSupported     -> kNotSupported
//   anything else                    -> kProtocol
// last_fault() keeps the fault type of the last failed call for callers that decide by it
// (QueryChangedDiskAreas: FileFault or InvalidArgument means "change id unknown").
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "http/http_client.h"
#include "xml/xml.h"

namespace vmbackup::hv::vsphere {

inline constexpr const char* kVimNs = "urn:vim25";

// A managed object reference: <obj type="VirtualMachine">vm-60</obj>.
struct MoRef {
  std::string type, value;
  bool empty() const { return value.empty(); }
  std::string Xml(const char* element) const;  // <element type="T">V</element>
  std::string Describe() const { return type + ":" + value; }
  static MoRef From(xml::Node n);
};

struct ObjectContent {
  MoRef obj;
  std::vector<std::pair<std::string, xml::Node>> props;  // name -> <val>
  xml::Node Get(std::string_view name) const;
};

// A RetrieveProperties answer: the document owns the nodes.
struct PropertyAnswer {
  std::vector<std::shared_ptr<xml::Document>> docs;
  std::vector<ObjectContent> objects;
};

class VimClient {
 public:
  struct Options {
    std::string url;  // https://HOST[:PORT]; the API is at /sdk
    std::string user, password;
    http::TlsOptions tls;
    double timeout_seconds = 60;     // per HTTP exchange
    double keepalive_seconds = 600;  // 0: no keepalive
  };
  // Connects, reads the ServiceContent, and logs in.
  static Result<std::unique_ptr<VimClient>> Connect(const Options& options);
  // Logs out (best effort) and stops the keepalive.
  ~VimClient();
  VimClient(const VimClient&) = delete;
  VimClient& operator=(const VimClient&) = delete;

  // Invokes `method` on `target` with `args` (XML elements, values escaped). On NotAuthenticated
  // it logs in again once and repeats the call. Returns the document of the answer; its
  // <returnval> elements are under returnval().
  Result<std::shared_ptr<xml::Document>> Invoke(const std::string& method, const MoRef& target,
                                                const std::string& args = "");
  // The <returnval> of an answer (absent when the method returns nothing).
  static xml::Node ReturnVal(const xml::Document& doc);

  // Properties `paths` of objects of `type`: those given, or (with `container_view` true) every
  // object of that type in the inventory through a ContainerView on the root folder.
  Result<PropertyAnswer> RetrieveProperties(const std::string& type,
                                            const std::vector<MoRef>& objects,
                                            const std::vector<std::string>& paths);
  Result<PropertyAnswer> RetrieveAll(const std::string& type,
                                     const std::vector<std::string>& paths);

  // SearchIndex.FindByInventoryPath ("DC0/vm/web"); kNotFound when nothing is there.
  Result<MoRef> FindByInventoryPath(const std::string& path);
  // SearchIndex.FindByUuid for VMs (bios uuid, or instance uuid); kNotFound when none.
  Result<MoRef> FindVmByUuid(const std::string& uuid, bool instance_uuid);

  // Polls the task until it ends (at most `limit_seconds`); the result element of its info
  // (absent for none) or the task's fault as a Status naming `what`.
  struct TaskResult {
    std::shared_ptr<xml::Document> doc;
    xml::Node result;
  };
  Result<TaskResult> WaitForTask(const MoRef& task, const std::string& what,
                                 double limit_seconds = 3600);

  Status Logout();
  // The session's key (SessionManager.currentSession.key), for TerminateSession.
  Result<std::string> SessionKey();

  const MoRef& root_folder() const { return root_folder_; }
  const MoRef& property_collector() const { return property_collector_; }
  const MoRef& search_index() const { return search_index_; }
  const MoRef& view_manager() const { return view_manager_; }
  const MoRef& session_manager() const { return session_manager_; }
  const MoRef& file_manager() const { return file_manager_; }
  const MoRef& authorization_manager() const { return authorization_manager_; }
  const MoRef& virtual_disk_manager() const { return virtual_disk_manager_; }
  const std::string& api_version() const { return api_version_; }
  const std::string& about() const { return about_; }
  const std::string& base_url() const { return options_.url; }
  const std::string& user() const { return options_.user; }
  // The session cookie, for the datastore file service (/folder).
  std::string cookies();
  // For the file service's requests refused as unauthenticated: logs in again unless another
  // thread already did since `stale_cookies` were taken, and returns the session's cookies.
  Result<std::string> RenewSession(const std::string& stale_cookies);
  const http::TlsOptions& tls() const { return options_.tls; }
  std::string last_fault() const;
  int logins() const { return logins_; }

 private:
  explicit VimClient(Options o) : options_(std::move(o)) {}
  Status Login();
  // One exchange; the fault type (if any) goes to `*fault`. Thread-safe (the keepalive).
  Result<std::shared_ptr<xml::Document>> Call(const std::string& method, const MoRef& target,
                                              const std::string& args, std::string* fault);
  void SetLastFault(const std::string& fault);
  void KeepAlive();

  Options options_;
  std::mutex mu_;
  std::mutex renew_mu_;  // one exchange at a time on the connection
  std::unique_ptr<http::Client> http_;
  mutable std::mutex fault_mu_;
  std::string last_fault_;  // of the last Invoke or task of the job's thread
  int logins_ = 0;
  MoRef root_folder_, property_collector_, search_index_, view_manager_, session_manager_,
      file_manager_, virtual_disk_manager_, authorization_manager_;
  std::string api_version_ = "6.5", about_;
  std::thread keepalive_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  bool logged_in_ = false;
};

// Reads a SOAP answer (`context` names the call in messages): the document, or the fault as a
// Status (see above) with its type in `*fault_type`. Anything not a SOAP envelope is kProtocol
// or kCorruption.
Result<std::shared_ptr<xml::Document>> ParseSoapAnswer(long http_status, std::string_view body,
                                                       const std::string& context,
                                                       std::string* fault_type);
// The ObjectContents of a RetrievePropertiesEx <returnval>.
void ReadObjectContents(xml::Node returnval, std::vector<ObjectContent>* out);

// The Status for a SOAP fault (see above).
Status FaultStatus(const std::string& fault_type, const std::string& message,
                   const std::string& context);

}  // namespace vmbackup::hv::vsphere
