// pgshift's own exchanges on a session's links (joining a transaction,
// finishing one on the other server, a mirror's rows, the client's settings
// for new). Their replies never reach the client: each is an ExpectedReply
// with an InternalReply, filled in by the link's pump.
#include "common/strings.h"
#include "protocol/messages/query.h"
#include "proxy/client_login.h"
#include "proxy/log.h"
#include "proxy/session.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace sqlstate = protocol::sqlstate;
}  // namespace

awaitable<std::shared_ptr<InternalReply>> Session::SendInternal(Link& l, std::string message) {
  auto reply = std::make_shared<InternalReply>();
  if (!l.ready()) {
    reply->done = true;
    reply->error = Fatal(sqlstate::kConnectionFailure,
                         StrCat("pgshift: lost the connection to backend ", l.name));
    co_return reply;
  }
  l.replies.emplace_back().internal = reply;
  error_code ec;
  co_await l.stream->Write(asio::buffer(message), ec);
  if (ec && !ended() && !l.broken()) {
    End(Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: lost the connection to backend ", l.name, ": ", ec.message())));
  }
  co_return reply;
}

awaitable<InternalPort::Error> Session::AwaitInternal(const std::shared_ptr<InternalReply>& reply,
                                                      std::string* value) {
  co_await WaitUntil([&reply] { return reply->done; });
  if (!reply->done) co_return Fatal(sqlstate::kConnectionFailure, "session ended");
  if (value != nullptr && reply->value) *value = *reply->value;
  co_return reply->error;
}

awaitable<InternalPort::Error> Session::ConnectServer(Link& l) {
  if (l.server == BackendId::kNew && !l.ready()) co_return co_await ConnectNew(false);
  co_return std::nullopt;
}

awaitable<void> Session::SyncSettings(Link& l) { co_await settings_sync_.Sync(l); }

}  // namespace pgshift::proxy
