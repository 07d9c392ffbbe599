#include "hv/libvirt/guest_agent.h"

#include <gtest/gtest.h>

namespace vmbackup::hv::libvirt {
namespace {

TEST(GuestAgentTest, Base64RoundTripsEveryLength) {
  std::string data;
  for (int n = 0; n < 70; ++n) {
    auto back = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(back.ok()) << n;
    EXPECT_EQ(*back, data) << n;
    data.push_back(char(n * 37));
  }
  EXPECT_EQ(Base64Encode("hello\n"), "aGVsbG8K");  // RFC 4648's alphabet and padding
  EXPECT_EQ(*Base64Decode("aGk="), "hi");
  EXPECT_FALSE(Base64Decode("aGk").ok());   // not a multiple of 4
  EXPECT_FALSE(Base64Decode("a*k=").ok());  // not base64
}

}  // namespace
}  // namespace vmbackup::hv::libvirt
