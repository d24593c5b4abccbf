// A session's logins: the client's and old's at the start (Session::Run),
// new's when first needed or after it was lost (ConnectNew), and a cancel
// request forwarded to every server of the session it names.
#include "common/strings.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/error_response.h"
#include "proxy/backend_login.h"
#include "proxy/client_login.h"
#include "proxy/deadline.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/session.h"

namespace pgshift::proxy {

namespace {
using protocol::ErrorFields;
using routing::BackendId;
namespace sqlstate = protocol::sqlstate;

// A slot of max_logins, given back when the login ends (or the session).
class LoginSlot {
 public:
  explicit LoginSlot(Server& server) : server_(server), held_(server.TryBeginLogin()) {}
  ~LoginSlot() { Release(); }
  bool held() const { return held_; }
  void Release() {
    if (std::exchange(held_, false)) server_.EndLogin();
  }

 private:
  Server& server_;
  bool held_;
};
}  // namespace

void Session::LogLoginTimeout(const Deadline& deadline) const {
  if (!deadline.expired()) return;
  LogEvent(LogLevel::kWarning, "login_timeout",
           {{"client", record_.address},
            {"reason",
             StrCat("no login within login_timeout (", config().proxy.login_timeout_s, " s)")}});
}

awaitable<void> Session::Run() {
  // Connections still logging in hold a slot of max_logins until their
  // login ends, and have login_timeout to finish it.
  LoginSlot slot(server_);
  if (!slot.held()) {
    client_.stream.Close();
    co_return;
  }
  auto deadline = std::make_unique<Deadline>(client_.stream, config().proxy.login_timeout_s);
  ClientLogin login_client(client_.stream, client_.buffer, record_.address, server_.stats());
  auto start = co_await login_client.ReadStartup(server_.client_tls());
  if (!start) {
    LogLoginTimeout(*deadline);
    co_return;
  }
  if (auto* cancel = std::get_if<protocol::CancelRequest>(&*start)) {
    co_await ForwardCancel(*cancel);
    client_.stream.Close();
    co_return;
  }
  record_.startup = std::get<protocol::StartupMessage>(*start);
  record_.user = std::string(record_.startup.Get("user"));
  record_.database = std::string(record_.startup.Get("database"));
  if (record_.database.empty()) record_.database = record_.user;
  if (record_.user.empty()) {
    co_await login_client.Fail(Fatal(sqlstate::kInvalidAuthorization,
                                     "no PostgreSQL user name specified in startup packet"));
    co_return;
  }
  if (!co_await login_client.Authenticate(*settings_, record_.user)) {
    LogLoginTimeout(*deadline);
    co_return;
  }
  deadline.reset();
  slot.Release();
  // A slot of max_clients only once authenticated: clients that cannot
  // log in never crowd out those that can.
  record_.admitted = server_.TryAdmitClient();
  if (!record_.admitted) {
    LogEvent(LogLevel::kWarning, "client_refused",
             {{"client", record_.address},
              {"user", record_.user},
              {"reason", StrCat("max_clients (", config().proxy.max_clients, ") reached")}});
    co_await login_client.Fail(
        Fatal(sqlstate::kTooManyConnections, "sorry, too many clients already"));
    co_return;
  }

  // Built as a named local: GCC 12 miscompiles aggregate temporaries inside
  // a co_await expression.
  BackendLoginParams params = LoginParams(BackendId::kOld);
  BackendLoginResult result = co_await LoginToBackend(params);
  if (auto* error = std::get_if<ErrorFields>(&result)) {
    server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
    co_await login_client.Fail(*error);
    co_return;
  }
  BackendLogin& login = std::get<BackendLogin>(result);
  Link& old = link(BackendId::kOld);
  old.Connect(std::move(login.stream), login.key.process_id);
  record_.cancel_key = {login.key.process_id, login.key.secret_key};
  server_.cancels().Add(
      {login.key.process_id, login.key.secret_key},
      CancelTarget{config().old_backend.endpoint, login.key.process_id, login.key.secret_key});

  std::string hello;
  protocol::Authentication{}.Encode(hello);  // AuthenticationOk
  hello.append(login.greeting);
  life_.stage = Lifecycle::kRelaying;
  co_await SendToClient(hello);
  if (!client_.writable()) co_return;
  record_.backend_pid = login.key.process_id;
  record_.tls = client_.stream.tls();
  record_.described.store(true, std::memory_order_release);
  PublishState();
  server_.stats().sessions_total.fetch_add(1, std::memory_order_relaxed);
  LogEvent(LogLevel::kInfo, "session_start",
           {{"session", StrCat(id_)},
            {"client", record_.address},
            {"user", record_.user},
            {"database", record_.database},
            {"backend_pid", StrCat(login.key.process_id)},
            {"tls", client_.stream.tls() ? "on" : "off"}});
  co_await Relay();
  LogEvent(LogLevel::kInfo, "session_end",
           {{"session", StrCat(id_)},
            {"client", record_.address},
            {"reason",
             life_.final_error ? life_.final_error->message() : "client closed the connection"}});
}

awaitable<void> Session::ForwardCancel(const protocol::CancelRequest& request) {
  auto targets = server_.cancels().Find({request.process_id, request.secret_key});
  if (targets.empty()) {
    LogEvent(LogLevel::kInfo, "cancel_ignored",
             {{"client", record_.address}, {"reason", "no session has this cancel key"}});
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  for (const CancelTarget& target : targets) {
    error_code ec;
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(
        target.endpoint.host, std::to_string(target.endpoint.port), WithError(ec));
    tcp::socket socket(executor);
    if (!ec) co_await asio::async_connect(socket, endpoints, WithError(ec));
    std::string packet;
    protocol::CancelRequest{target.process_id, target.secret_key}.Encode(packet);
    if (!ec) co_await asio::async_write(socket, asio::buffer(packet), WithError(ec));
    LogEvent(ec ? LogLevel::kWarning : LogLevel::kInfo, "cancel_forwarded",
             {{"client", record_.address},
              {"backend_pid", StrCat(target.process_id)},
              {"result", ec ? ec.message() : "sent"}});
  }
}

BackendLoginParams Session::LoginParams(BackendId server) const {
  const routing::UserConfig* entry = config().FindUser(record_.user);
  return BackendLoginParams{
      .backend_name = server == BackendId::kOld ? "old" : "new",
      .backend = server == BackendId::kOld ? config().old_backend : *config().new_backend,
      .client_startup = record_.startup,
      .fallback_password = entry ? std::string_view(entry->password) : std::string_view(),
      .tls_context = server_.backend_tls(),
      .connect_timeout_s = config().proxy.connect_timeout_s,
  };
}

awaitable<std::optional<ErrorFields>> Session::ConnectNew(bool fatal) {
  BackendLoginParams params = LoginParams(BackendId::kNew);
  BackendLoginResult result = co_await LoginToBackend(params);
  if (auto* error = std::get_if<ErrorFields>(&result)) {
    server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
    LogEvent(LogLevel::kWarning, "backend_connect_failed",
             {{"session", StrCat(id_)}, {"backend", "new"}, {"reason", error->message()}});
    ErrorFields failed =
        Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: cannot connect to backend new: ", error->message()));
    if (fatal) End(failed);
    co_return failed;
  }
  BackendLogin& login = std::get<BackendLogin>(result);
  Link& fresh = link(BackendId::kNew);
  // New is back after it was lost: it may have come back from a crash
  // holding prepared mirrors (and their row locks), resolved now rather
  // than at the next recovery_interval.
  if (fresh.broken()) server_.RecoverSoon();
  // A mirror link lost earlier is replaced once its pump has stopped.
  co_await WaitUntil([&fresh] { return !fresh.pump_running; });
  fresh.Connect(std::move(login.stream), login.key.process_id);
  if (record_.cancel_key) {
    server_.cancels().Add(
        {record_.cancel_key->first, record_.cancel_key->second},
        CancelTarget{config().new_backend->endpoint, login.key.process_id, login.key.secret_key});
  }
  LogEvent(LogLevel::kInfo, "backend_opened",
           {{"session", StrCat(id_)},
            {"backend", "new"},
            {"backend_pid", StrCat(login.key.process_id)}});
  if (ended()) {
    fresh.stream->Close();
    co_return Fatal(sqlstate::kConnectionFailure, "session ended");
  }
  StartPump(fresh);
  co_return std::nullopt;
}

}  // namespace pgshift::proxy
