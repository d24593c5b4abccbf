// Every message codec fed arbitrary payloads: decoding never crashes, and
// what decodes encodes to a message that decodes to the same value.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/frame.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/backend_key_data.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/copy.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/function_call.h"
#include "protocol/messages/negotiate_protocol_version.h"
#include "protocol/messages/notification_response.h"
#include "protocol/messages/parameter_description.h"
#include "protocol/messages/parameter_status.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/password.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "protocol/messages/startup.h"

namespace {

namespace p = pgshift::protocol;

// `header`: bytes before the payload in what Encode writes (type and
// length for most messages, the length alone for startup packets).
template <typename M>
void RoundTrip(std::string_view payload, size_t header = p::kHeaderSize) {
  auto decoded = M::Decode(payload);
  if (!decoded.ok()) return;
  std::string encoded;
  decoded->Encode(encoded);
  if (encoded.size() < header) std::abort();
  auto again = M::Decode(std::string_view(encoded).substr(header));
  if (!again.ok() || !(*again == *decoded)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 26) {
    case 0: RoundTrip<p::Authentication>(payload); break;
    case 1: RoundTrip<p::BackendKeyData>(payload); break;
    case 2: RoundTrip<p::Bind>(payload); break;
    case 3: RoundTrip<p::Close>(payload); break;
    case 4: RoundTrip<p::CommandComplete>(payload); break;
    case 5: RoundTrip<p::CopyData>(payload); break;
    case 6: RoundTrip<p::CopyFail>(payload); break;
    case 7: RoundTrip<p::CopyInResponse>(payload); break;
    case 8: RoundTrip<p::DataRow>(payload); break;
    case 9: RoundTrip<p::Describe>(payload); break;
    case 10: RoundTrip<p::ErrorResponse>(payload); break;
    case 11: RoundTrip<p::Execute>(payload); break;
    case 12: RoundTrip<p::FunctionCall>(payload); break;
    case 13: RoundTrip<p::NegotiateProtocolVersion>(payload); break;
    case 14: RoundTrip<p::NotificationResponse>(payload); break;
    case 15: RoundTrip<p::ParameterDescription>(payload); break;
    case 16: RoundTrip<p::ParameterStatus>(payload); break;
    case 17: RoundTrip<p::Parse>(payload); break;
    case 18: RoundTrip<p::PasswordMessage>(payload); break;
    case 19: RoundTrip<p::SaslInitialResponse>(payload); break;
    case 20: RoundTrip<p::Query>(payload); break;
    case 21: RoundTrip<p::ReadyForQuery>(payload); break;
    case 22: RoundTrip<p::RowDescription>(payload); break;
    case 23: RoundTrip<p::StartupMessage>(payload, 4); break;
    case 24: RoundTrip<p::CancelRequest>(payload, 4); break;
    case 25: RoundTrip<p::FunctionCallResponse>(payload); break;
  }
  return 0;
}
