// Commands to a domain's qemu-guest-agent through libvirt (libvirt-qemu's
// virDomainQemuAgentCommand): a ping, and running a program in the guest (guest-exec) with its
// input, output and exit code. The agent's JSON protocol: QEMU's qga/qapi-schema.json.
#pragma once

#include <libvirt/libvirt.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::hv::libvirt {

// The agent's "return" for `command`; kUnavailable when the agent does not answer within
// `timeout_s`, the agent's own error (kIOError) otherwise.
Result<nlohmann::json> AgentCommand(virDomainPtr dom, const nlohmann::json& command, int timeout_s);

// Whether the agent answers guest-ping within a second.
bool AgentAnswers(virDomainPtr dom);

struct GuestExecResult {
  int exit_code = -1;
  int signal = 0;  // the signal that ended it, 0: none
  std::string out, err;
  bool timed_out = false;  // it still ran after the time limit (and was left running)
};

// Runs `path` with `args` in the guest, `input` on its standard input, and waits up to
// `timeout_s` seconds for it to end. Output beyond the agent's limit (16 MiB) is cut.
Result<GuestExecResult> GuestExec(virDomainPtr dom, const std::string& path,
                                  const std::vector<std::string>& args, const std::string& input,
                                  int timeout_s);

// Base64 (RFC 4648) as the agent writes it; decoding rejects what is not base64.
std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace vmbackup::hv::libvirt
