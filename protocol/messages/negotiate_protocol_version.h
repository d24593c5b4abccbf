#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/message_type.h"

namespace pgshift::protocol {

// NegotiateProtocolVersion ('v'): the server's newest minor version and the
// startup options ("_pq_.*") it did not recognise.
struct NegotiateProtocolVersion {
  static constexpr char kType = backend::kNegotiateProtocolVersion;
  int32_t newest_minor_version = 0;
  std::vector<std::string> unrecognized_options;
  static absl::StatusOr<NegotiateProtocolVersion> Decode(std::string_view payload);
  void Encode(std::string& out) const;
  bool operator==(const NegotiateProtocolVersion&) const = default;
};

}  // namespace pgshift::protocol
