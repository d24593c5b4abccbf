#include "proxy/session/internal_batch.h"

#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"

namespace pgshift::proxy {

void AppendInternal(std::string& out, std::string_view sql, std::optional<std::string> param,
                    const std::string* prepared) {
  static constexpr const char* kOnce = "pgshift_once";
  static constexpr const char* kPortal = "pgshift_portal";
  if (prepared == nullptr) {
    protocol::Close{protocol::Target::kStatement, kOnce}.Encode(out);
    protocol::Parse{kOnce, std::string(sql), {}}.Encode(out);
  }
  // A portal left by a batch that failed before closing it goes first.
  protocol::Close{protocol::Target::kPortal, kPortal}.Encode(out);
  protocol::Bind bind;
  bind.portal = kPortal;
  bind.statement = prepared != nullptr ? *prepared : kOnce;
  if (param) bind.parameters.push_back(std::move(param));
  bind.Encode(out);
  protocol::Execute{kPortal, 0}.Encode(out);
  protocol::Close{protocol::Target::kPortal, kPortal}.Encode(out);
}

std::string InternalBatch(std::initializer_list<std::string_view> statements) {
  std::string out;
  for (std::string_view sql : statements) AppendInternal(out, sql);
  protocol::Sync{}.Encode(out);
  return out;
}

}  // namespace pgshift::proxy
