#include "base/lazy_library.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace vmbackup::lazy {

Status Load(Library& lib) {
  std::call_once(lib.once, [&] {
    // RTLD_LOCAL: the library's symbols serve only these slots, never another library's calls.
    void* handle = ::dlopen(lib.soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      lib.status = NotFoundError(std::string("cannot load ") + lib.soname + " (Debian package " +
                                 lib.package + "): " + (why ? why : "dlopen failed"));
      return;
    }
    for (size_t i = 0; i < lib.count; ++i) {
      void* fn = ::dlsym(handle, lib.names[i]);
      if (!fn) {
        lib.status = NotFoundError(std::string(lib.soname) + " has no function " + lib.names[i] +
                                   " (Debian package " + lib.package + " too old?)");
        return;
      }
      // Another thread may jump through the slot at once: one aligned pointer store.
      __atomic_store_n(lib.slots[i], fn, __ATOMIC_RELEASE);
    }
  });
  return lib.status;
}

}  // namespace vmbackup::lazy

extern "C" void vmbackup_lazy_load_or_die(vmbackup::lazy::Library* lib) {
  vmbackup::Status s = vmbackup::lazy::Load(*lib);
  if (s.ok()) return;
  // The call that needed the library cannot go on, and it has no way to return an error.
  std::fprintf(stderr, "vmbackup: %s\n", s.message().c_str());
  std::_Exit(127);
}
