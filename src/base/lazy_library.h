// Shared libraries loaded when first used, not at program start.
//
// Linking libvirt, libguestfs, The Sleuth Kit, libcurl and libnbd costs every run of the
// program ~34 ms before main (74 libraries to map and relocate instead of 16), a tenth of an
// incremental backup, though most commands use none of them. glibc has no lazy
// loading of libraries and Debian ships no stub generator (Implib.so's role), so this does it:
// the functions a library's list names become this program's own, each a jump through a slot.
// A slot first points to a loader that saves the argument registers, dlopens the library, fills
// every slot of it with dlsym and goes on into the real function; later calls cost one indirect
// jump. A call site calls the function as before and gets the real one.
//
// Only functions (a variable such as libxml2's xmlFree is read through a function of its
// library: xml.cc asks xmlMemGet) and only x86-64 (the register save is written for its calling
// convention).
//
// A library that cannot be loaded when a call needs it ends the program with a message naming
// the library and its Debian package (before, the program did not start at all). Entry points
// call Load first (e.g. `VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::libvirt))`) to get that as
// an error instead.
#pragma once

#include <cstddef>
#include <mutex>

#include "base/status.h"

#if !defined(__x86_64__) || !defined(__ELF__)
#error "base/lazy_library.h: the trampolines are written for x86-64 ELF"
#endif

namespace vmbackup::lazy {

struct Library {
  const char* soname;   // "libvirt.so.0"
  const char* package;  // Debian's package that has it, for the message: "libvirt0"
  const char* const* names;
  void** const* slots;  // slots[i] is where names[i]'s trampoline jumps through
  size_t count;
  std::once_flag once;
  Status status;  // of the one load
};

// Loads `lib` once (thread-safe) and fills its slots; kNotFound naming the library and its
// package when it or one of its functions is missing.
Status Load(Library& lib);

}  // namespace vmbackup::lazy

// The loader the trampolines call: Load, or the end of the program with its message.
extern "C" void vmbackup_lazy_load_or_die(vmbackup::lazy::Library* lib)
    __attribute__((visibility("hidden")));

// One function's trampoline, its slot (first pointing to its loader stub), and the stub, which
// puts the slot's address in r11 (a scratch register no argument uses) for the loader.
#define VMBACKUP_LAZY_TRAMPOLINE_(fn)                                                        \
  ".pushsection .data.rel.local,\"aw\"\n.balign 8\nvmbackup_lazy_slot_" #fn                  \
  ": .quad vmbackup_lazy_stub_" #fn "\n.popsection\n.text\n.globl " #fn "\n.hidden " #fn     \
  "\n.type " #fn ",@function\n" #fn ":\n  jmp *vmbackup_lazy_slot_" #fn "(%rip)\n.size " #fn \
  ",.-" #fn "\nvmbackup_lazy_stub_" #fn ":\n  lea vmbackup_lazy_slot_" #fn                   \
  "(%rip), %r11\n  jmp vmbackup_lazy_load_here\n"
#define VMBACKUP_LAZY_NAME_(fn) #fn,
#define VMBACKUP_LAZY_SLOT_DECL_(fn) extern "C" void* vmbackup_lazy_slot_##fn;
#define VMBACKUP_LAZY_SLOT_ADDR_(fn) &vmbackup_lazy_slot_##fn,

// Defines the library `vmbackup::lazy::ID`: its soname, its package, and LIST, an X-macro of
// its functions (`#define LIST(X) X(virConnectOpen) X(virConnectClose) ...`). At most one per
// .cc file (its loader's symbols are local to the file), outside any namespace.
//
// The loader: entered by a jump from a stub, so the stack is as at the call (rsp is 8 mod 16).
// It saves the registers that can carry arguments (rdi, rsi, rdx, rcx, r8, r9, rax: the vector
// count of a varargs call, xmm0-7) and r11, calls vmbackup_lazy_load_or_die with rsp 16-aligned
// (8 pushes and 136 bytes), restores them and jumps through the slot, which is filled now.
#define VMBACKUP_LAZY_LIBRARY(ID, SONAME, PACKAGE, LIST)                                   \
  LIST(VMBACKUP_LAZY_SLOT_DECL_)                                                           \
  namespace vmbackup::lazy {                                                               \
  namespace {                                                                              \
  const char* const kNames[] = {LIST(VMBACKUP_LAZY_NAME_)};                                \
  void** const kSlots[] = {LIST(VMBACKUP_LAZY_SLOT_ADDR_)};                                \
  }                                                                                        \
  Library ID{SONAME, PACKAGE, kNames, kSlots, sizeof(kNames) / sizeof(kNames[0]), {}, {}}; \
  }                                                                                        \
  static vmbackup::lazy::Library* const vmbackup_lazy_library_here __asm__(                \
      "vmbackup_lazy_library_here") __attribute__((used)) = &vmbackup::lazy::ID;           \
  asm(".text\nvmbackup_lazy_load_here:\n"                                                  \
      "  push %r11\n  push %rdi\n  push %rsi\n  push %rdx\n  push %rcx\n  push %r8\n"      \
      "  push %r9\n  push %rax\n  sub $136, %rsp\n"                                        \
      "  movdqu %xmm0, 0(%rsp)\n  movdqu %xmm1, 16(%rsp)\n  movdqu %xmm2, 32(%rsp)\n"      \
      "  movdqu %xmm3, 48(%rsp)\n  movdqu %xmm4, 64(%rsp)\n  movdqu %xmm5, 80(%rsp)\n"     \
      "  movdqu %xmm6, 96(%rsp)\n  movdqu %xmm7, 112(%rsp)\n"                              \
      "  mov vmbackup_lazy_library_here(%rip), %rdi\n"                                     \
      "  call vmbackup_lazy_load_or_die\n"                                                 \
      "  movdqu 0(%rsp), %xmm0\n  movdqu 16(%rsp), %xmm1\n  movdqu 32(%rsp), %xmm2\n"      \
      "  movdqu 48(%rsp), %xmm3\n  movdqu 64(%rsp), %xmm4\n  movdqu 80(%rsp), %xmm5\n"     \
      "  movdqu 96(%rsp), %xmm6\n  movdqu 112(%rsp), %xmm7\n"                              \
      "  add $136, %rsp\n  pop %rax\n  pop %r9\n  pop %r8\n  pop %rcx\n  pop %rdx\n"       \
      "  pop %rsi\n  pop %rdi\n  pop %r11\n  jmp *(%r11)\n" LIST(VMBACKUP_LAZY_TRAMPOLINE_));

// Names a library defined elsewhere, for its users' calls of Load.
#define VMBACKUP_DECLARE_LAZY_LIBRARY(ID) \
  namespace vmbackup::lazy {              \
  extern Library ID;                      \
  }
