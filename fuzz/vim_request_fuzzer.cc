// Fuzzes what `vmhost serve` reads from any client: a SOAP request, parsed and dispatched with
// a valid session against a real datastore with one VM (PropertyCollector specs, traversals,
// VM and snapshot methods, tasks). Nothing may crash, hang or leave the datastore unreadable.
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "host/datastore.h"
#include "vsphere_api/service.h"

namespace {

struct World {
  std::unique_ptr<vmbackup::vsphere_api::Service> service;
  std::string cookie;
};

World& Setup() {
  static World* w = [] {
    auto* world = new World;
    char tmpl[] = "/tmp/vim-request-fuzz-XXXXXX";
    const std::string root = ::mkdtemp(tmpl);
    (void)vmbackup::host::Datastore::Init(root);
    auto ds = vmbackup::host::Datastore::Open(root);
    vmbackup::host::NewVmOptions o;
    o.disk_sizes = {1 << 20};
    o.cbt = true;
    (void)ds->CreateVm("fz", o);
    vmbackup::vsphere_api::ServiceOptions so;
    so.inventory.datastore_root = root;
    so.user = "u";
    so.password = "p";
    so.login_fail_delay_ms = 0;
    so.longest_update_wait_seconds = 0;  // WaitForUpdates answers at once
    world->service = std::make_unique<vmbackup::vsphere_api::Service>(so);
    auto a = world->service->Handle(
        "<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body><Login "
        "xmlns=\"urn:vim25\"><_this type=\"SessionManager\">ha-sessionmgr</_this><userName>u"
        "</userName><password>p</password></Login></Body></Envelope>",
        "");
    world->cookie = a.set_cookie;
    return world;
  }();
  return *w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = Setup();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto a = w.service->Handle(text, w.cookie);
  if (a.http_status != 200 && a.http_status != 500) std::abort();
  w.service->DrainTasks();
  return 0;
}
