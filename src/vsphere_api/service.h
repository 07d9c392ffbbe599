// The vim25 methods vmhost answers (docs/vsphere-api.md): one SOAP request in, one answer or
// fault out. Sessions are required for everything but RetrieveServiceContent and Login.
// Thread-safe: the HTTP server calls Handle from several threads at once.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "vsphere_api/inventory.h"
#include "vsphere_api/sessions.h"
#include "vsphere_api/soap.h"
#include "vsphere_api/tasks.h"

namespace vmbackup::vsphere_api {

struct ServiceOptions {
  InventoryOptions inventory;
  std::string user;
  std::string password;
  size_t default_page = 100;
  int login_fail_delay_ms = 500;  // a wrong password is answered this much later
  double longest_update_wait_seconds =
      300;  // WaitForUpdates without a limit waits this long  // objects per
            // RetrievePropertiesEx answer without maxObjects
};

class Service {
 public:
  explicit Service(ServiceOptions options);

  struct Answer {
    int http_status = 200;
    std::string body;
    std::string set_cookie;  // a new session's cookie value (Login)
  };
  // `cookie_session` is the vmware_soap_session cookie of the request ("" for none).
  Answer Handle(std::string_view body, const std::string& cookie_session);

  // The session of a cookie, for the datastore file service.
  bool ValidSession(const std::string& key) { return sessions_.Find(key).has_value(); }
  const Inventory& inventory() const { return inventory_; }
  void DrainTasks() { tasks_.Drain(); }

 private:
  friend class RequestSource;
  struct View {
    MoRef container;
    std::vector<std::string> types;
    bool recursive = false;
    std::string session;
  };
  // A PropertyFilter (CreateFilter) and what WaitForUpdates last reported through it.
  struct Filter {
    std::shared_ptr<xml::Document> doc;  // holds `spec`
    xml::Node spec;
    std::string session;
    std::map<MoRef, std::map<std::string, std::string>> reported;  // obj -> path -> <val>
  };
  struct Paged {
    std::vector<std::string> rest;  // ObjectContent elements not yet sent
    std::string session;
  };

  FaultOr<std::string> Dispatch(const SoapRequest& r, const Session& s);
  FaultOr<std::string> SessionMethod(const SoapRequest& r, const Session& s);
  FaultOr<std::string> PropertyMethod(const SoapRequest& r, const Session& s);
  FaultOr<std::string> SearchMethod(const SoapRequest& r);
  FaultOr<std::string> VmMethod(const SoapRequest& r, const Session& s);
  FaultOr<std::string> SnapshotMethod(const SoapRequest& r, const Session& s);
  FaultOr<std::string> FolderMethod(const SoapRequest& r, const Session& s);
  FaultOr<std::string> AuthorizationMethod(const SoapRequest& r);
  // CreateFilter, DestroyPropertyFilter, WaitForUpdates(Ex), CheckForUpdates (updates.cc).
  FaultOr<std::string> UpdateMethod(const SoapRequest& r, const Session& s);
  // The changes of every filter of the session since they were last reported, as
  // <filterSet> elements ("" when nothing changed); marks them reported.
  FaultOr<std::string> CollectUpdates(const Session& s, bool from_scratch);
  FaultOr<std::string> QueryChangedDiskAreas(const SoapRequest& r, const std::string& vm);
  FaultOr<std::string> StartTask(const Session& s, const std::string& vm,
                                 const std::string& description, Tasks::Work work);
  FaultOr<Value> Properties(const MoRef& obj, const Session& s);
  std::vector<MoRef> ViewContents(const View& v);
  // How many entries of `m` (views, filters) belong to `session`; mu_ held.
  template <class Map>
  static size_t OwnedBy(const Map& m, const std::string& session) {
    size_t n = 0;
    for (const auto& [id, entry] : m) n += entry.session == session;
    return n;
  }
  std::string Page(std::vector<std::string> objects, size_t max, const std::string& session);

  ServiceOptions options_;
  Inventory inventory_;
  Sessions sessions_;
  Tasks tasks_;
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<std::string, View> views_;
  std::map<uint64_t, Paged> pages_;                  // by token, oldest first
  std::map<std::string, Filter> filters_;            // by PropertyFilter moref value
  std::map<std::string, uint64_t> update_versions_;  // by session
};

}  // namespace vmbackup::vsphere_api
