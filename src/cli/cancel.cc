#include "cli/cancel.h"

#include <signal.h>

namespace vmbackup::cli {
namespace {

std::atomic<bool> g_cancel{false};
void OnSignal(int) { g_cancel = true; }

}  // namespace

std::atomic<bool>* CancelOnSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return &g_cancel;
}

}  // namespace vmbackup::cli
