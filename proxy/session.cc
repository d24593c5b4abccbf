#include "proxy/session.h"

#include "common/strings.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/ready_for_query.h"
#include "proxy/backend_login.h"
#include "proxy/client_login.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
namespace sqlstate = protocol::sqlstate;

ErrorFields AdminShutdown() {
  return Fatal(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
}

// The byte ranges to pass on from one read, merged where adjacent so that a
// read of many small messages becomes one write.
class ForwardList {
 public:
  void Add(std::string_view bytes) {
    if (!buffers_.empty()) {
      auto& last = buffers_.back();
      const char* end = static_cast<const char*>(last.data()) + last.size();
      if (end == bytes.data()) {
        last = asio::const_buffer(last.data(), last.size() + bytes.size());
        return;
      }
    }
    buffers_.emplace_back(bytes.data(), bytes.size());
  }
  void clear() { buffers_.clear(); }
  bool empty() const { return buffers_.empty(); }
  const std::vector<asio::const_buffer>& buffers() const { return buffers_; }

 private:
  std::vector<asio::const_buffer> buffers_;
};

}  // namespace

// Client to backend: everything is streamed; the session only counts the
// messages that will be answered by a ReadyForQuery, and notes Terminate.
class Session::ClientToBackend : public protocol::FrameHandler {
 public:
  explicit ClientToBackend(Session& s) : s_(s) {}
  protocol::Delivery OnHeader(char type, size_t) override {
    switch (type) {
      case 'Q':
      case 'S':
      case 'F':
        ++s_.queries_;
        s_.NoteSent();
        break;
      case 'X':
        terminated = true;
        break;
      default:
        break;
    }
    return protocol::Delivery::kStream;
  }
  void OnWhole(char, std::string_view bytes) override { out.Add(bytes); }
  void OnStreamed(std::string_view bytes) override { out.Add(bytes); }

  ForwardList out;
  bool terminated = false;

 private:
  Session& s_;
};

// Backend to client: ReadyForQuery is read whole for the transaction state;
// everything else is streamed.
class Session::BackendToClient : public protocol::FrameHandler {
 public:
  explicit BackendToClient(Session& s) : s_(s) {}
  protocol::Delivery OnHeader(char type, size_t size) override {
    s_.last_backend_type_ = type;
    if (type == 'Z') {
      if (size != protocol::kHeaderSize + 1) {
        error = StrCat("invalid ReadyForQuery length ", size);
        return protocol::Delivery::kStream;
      }
      return protocol::Delivery::kWhole;
    }
    return protocol::Delivery::kStream;
  }
  void OnWhole(char, std::string_view bytes) override {
    auto ready = protocol::ReadyForQuery::Decode(bytes.substr(protocol::kHeaderSize));
    if (!ready.ok()) {
      error = std::string(MessageOf(ready.status()));
      return;
    }
    s_.transaction_status_ = ready->status;
    s_.NoteAnswered();
    // Between transactions: the next one runs under the newest settings.
    if (s_.transaction_status_ == 'I' &&
        s_.server_.settings_generation() != s_.settings_->generation) {
      s_.settings_ = s_.server_.settings();
    }
    out.Add(bytes);
  }
  void OnStreamed(std::string_view bytes) override { out.Add(bytes); }

  ForwardList out;
  std::string error;

 private:
  Session& s_;
};

Session::Session(Server& server, tcp::socket socket, uint64_t id)
    : server_(server), id_(id), settings_(server.settings()), client_(std::move(socket)),
      client_buffer_(4096) {
  error_code ec;
  auto remote = client_.socket().remote_endpoint(ec);
  client_address_ = ec ? "unknown" : StrCat(remote.address().to_string(), ":", remote.port());
}

Session::~Session() {
  if (cancel_key_) server_.cancels().Remove({cancel_key_->first, cancel_key_->second});
  if (admitted_) server_.ReleaseClient();
}

awaitable<void> Session::Run() {
  ClientLogin login_client(client_, client_buffer_, client_address_, server_.stats());
  auto start = co_await login_client.ReadStartup(server_.client_tls());
  if (!start) co_return;
  if (auto* cancel = std::get_if<protocol::CancelRequest>(&*start)) {
    co_await ForwardCancel(*cancel);
    client_.Close();
    co_return;
  }
  auto* startup = &std::get<protocol::StartupMessage>(*start);
  user_ = std::string(startup->Get("user"));
  database_ = std::string(startup->Get("database"));
  if (database_.empty()) database_ = user_;
  if (user_.empty()) {
    co_await login_client.Fail(Fatal(sqlstate::kInvalidAuthorization,
                                     "no PostgreSQL user name specified in startup packet"));
    co_return;
  }
  admitted_ = server_.TryAdmitClient();
  if (!admitted_) {
    LogEvent(LogLevel::kWarning, "client_refused",
             {{"client", client_address_}, {"user", user_},
              {"reason", StrCat("max_clients (", config().proxy.max_clients, ") reached")}});
    co_await login_client.Fail(
        Fatal(sqlstate::kTooManyConnections, "sorry, too many clients already"));
    co_return;
  }
  if (!co_await login_client.Authenticate(*settings_, user_)) co_return;

  // Built as a named local: GCC 12 miscompiles aggregate temporaries inside
  // a co_await expression.
  const routing::UserConfig* entry = config().FindUser(user_);
  BackendLoginParams params{
      .backend_name = "old",
      .backend = config().old_backend,
      .client_startup = *startup,
      .fallback_password = entry ? std::string_view(entry->password) : std::string_view(),
      .tls_context = server_.backend_tls(),
      .connect_timeout_s = config().proxy.connect_timeout_s,
  };
  BackendLoginResult result = co_await LoginToBackend(params);
  if (auto* error = std::get_if<ErrorFields>(&result)) {
    server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
    co_await login_client.Fail(*error);
    co_return;
  }
  BackendLogin& login = std::get<BackendLogin>(result);
  backend_ = std::move(login.stream);
  cancel_key_ = {login.key.process_id, login.key.secret_key};
  server_.cancels().Add({login.key.process_id, login.key.secret_key},
                        CancelTarget{config().old_backend.endpoint, login.key.process_id,
                                     login.key.secret_key});

  std::string hello;
  protocol::Authentication{}.Encode(hello);  // AuthenticationOk
  hello.append(login.greeting);
  relaying_ = true;
  co_await SendToClient(hello);
  if (!client_writable_) co_return;
  backend_pid_ = login.key.process_id;
  tls_ = client_.tls();
  described_.store(true, std::memory_order_release);
  PublishState();
  server_.stats().sessions_total.fetch_add(1, std::memory_order_relaxed);
  LogEvent(LogLevel::kInfo, "session_start",
           {{"session", StrCat(id_)}, {"client", client_address_}, {"user", user_},
            {"database", database_}, {"backend_pid", StrCat(login.key.process_id)},
            {"tls", client_.tls() ? "on" : "off"}});
  co_await Relay();
  LogEvent(LogLevel::kInfo, "session_end",
           {{"session", StrCat(id_)}, {"client", client_address_},
            {"reason", final_error_ ? final_error_->message() : "client closed the connection"}});
}

awaitable<void> Session::ForwardCancel(const protocol::CancelRequest& request) {
  auto targets = server_.cancels().Find({request.process_id, request.secret_key});
  if (targets.empty()) {
    LogEvent(LogLevel::kInfo, "cancel_ignored",
             {{"client", client_address_}, {"reason", "no session has this cancel key"}});
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
             {{"client", client_address_}, {"backend_pid", StrCat(target.process_id)},
              {"result", ec ? ec.message() : "sent"}});
  }
}

awaitable<void> Session::Relay() {
  auto self = shared_from_this();
  auto executor = co_await asio::this_coro::executor;
  backend_pump_done_ = std::make_unique<asio::steady_timer>(executor);
  backend_pump_done_->expires_at(asio::steady_timer::time_point::max());
  backend_pump_running_ = true;
  asio::co_spawn(
      executor,
      [self]() -> awaitable<void> {
        co_await self->PumpBackendToClient();
        self->backend_pump_running_ = false;
        self->backend_pump_done_->cancel();
      },
      asio::detached);
  co_await PumpClientToBackend();
  if (backend_pump_running_) {
    error_code ignored;
    co_await backend_pump_done_->async_wait(WithError(ignored));
  }
  if (final_error_ && client_writable_ && !client_mid_message_ && client_.is_open()) {
    std::string out;
    protocol::ErrorResponse(*final_error_).Encode(out);
    co_await SendToClient(out);
  }
  client_.Close();
}

awaitable<void> Session::PumpClientToBackend() {
  ClientToBackend handler(*this);
  protocol::FrameDecoder decoder(protocol::kFrontendTypes, config().proxy.max_message_size);
  while (!ended_) {
    error_code ec;
    size_t n = co_await client_.ReadSome(client_buffer_.PrepareRead(), ec);
    if (ec) {
      if (!ended_ && client_sent_partial_) {
        LogEvent(LogLevel::kInfo, "client_lost_mid_message",
                 {{"session", StrCat(id_)}, {"client", client_address_}});
      }
      client_writable_ = client_writable_ && ec == asio::error::operation_aborted;
      End(std::nullopt);
      break;
    }
    client_buffer_.Commit(n);
    handler.out.clear();
    auto used = decoder.Decode(client_buffer_.data(), handler);
    if (!used.ok()) {
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kWarning, "protocol_violation",
               {{"session", StrCat(id_)}, {"client", client_address_}, {"side", "client"},
                {"reason", MessageOf(used.status())}});
      End(Fatal(sqlstate::kProtocolViolation, StrCat("pgshift: ", MessageOf(used.status()))));
      break;
    }
    client_sent_partial_ = decoder.streaming();
    if (!handler.out.empty()) {
      co_await backend_->Write(handler.out.buffers(), ec);
      if (ec) {
        if (!ended_) {
          End(Fatal(sqlstate::kConnectionFailure,
                    StrCat("pgshift: lost the connection to backend old: ", ec.message())));
        }
        break;
      }
    }
    client_buffer_.Consume(*used);
    PublishState();
    if (handler.terminated) {
      End(std::nullopt);
      break;
    }
  }
}

awaitable<void> Session::PumpBackendToClient() {
  BackendToClient handler(*this);
  protocol::FrameDecoder decoder(protocol::kBackendTypes, config().proxy.max_message_size);
  while (!ended_) {
    error_code ec;
    size_t n = co_await backend_->ReadSome(backend_buffer_.PrepareRead(), ec);
    if (ec) {
      // A backend that ends with a FATAL error has told the client why.
      bool explained = last_backend_type_ == 'E' && !decoder.streaming();
      if (!ended_) {
        server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
        LogEvent(LogLevel::kWarning, "backend_lost",
                 {{"session", StrCat(id_)}, {"backend", "old"}, {"reason", ec.message()}});
      }
      End(explained ? std::nullopt
                    : std::optional(Fatal(sqlstate::kConnectionFailure,
                                          StrCat("pgshift: lost the connection to backend old: ",
                                                 ec.message()))));
      break;
    }
    backend_buffer_.Commit(n);
    handler.out.clear();
    auto used = decoder.Decode(backend_buffer_.data(), handler);
    if (!used.ok() || !handler.error.empty()) {
      std::string why = used.ok() ? handler.error : std::string(MessageOf(used.status()));
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kError, "protocol_violation",
               {{"session", StrCat(id_)}, {"side", "backend old"}, {"reason", why}});
      End(Fatal(sqlstate::kProtocolViolation,
                StrCat("pgshift: backend old sent an invalid message: ", why)));
      break;
    }
    if (!handler.out.empty()) {
      co_await client_.Write(handler.out.buffers(), ec);
      if (ec) {
        client_writable_ = false;
        End(std::nullopt);
        break;
      }
    }
    client_mid_message_ = decoder.streaming();
    backend_buffer_.Consume(*used);
    PublishState();
    if (shutdown_requested_ && IdleOutsideTransaction()) End(AdminShutdown());
  }
}

bool Session::IdleOutsideTransaction() const {
  return PendingResults() == 0 && transaction_status_ == 'I' && !client_sent_partial_ &&
         !client_mid_message_;
}

void Session::NoteSent() {
  if (untimed_ > 0 || sent_count_ == sent_at_.size()) {
    ++untimed_;
    return;
  }
  sent_at_[(sent_head_ + sent_count_++) % sent_at_.size()] = Clock::now();
}

void Session::NoteAnswered() {
  if (sent_count_ > 0) {
    server_.stats().ObserveQuery(Clock::now() - sent_at_[sent_head_]);
    sent_head_ = (sent_head_ + 1) % sent_at_.size();
    --sent_count_;
  } else if (untimed_ > 0) {
    --untimed_;
  }
}

void Session::PublishState() {
  published_state_.store(PendingResults() > 0 ? 'a' : transaction_status_,
                         std::memory_order_relaxed);
  published_queries_.store(queries_, std::memory_order_relaxed);
}

ClientRow Session::Describe() const {
  ClientRow row;
  row.session = id_;
  row.client = client_address_;
  row.connected_at = connected_at_;
  if (!described_.load(std::memory_order_acquire)) {
    row.state = "starting";
    return row;
  }
  row.user = user_;
  row.database = database_;
  row.backend_pid = backend_pid_;
  row.tls = tls_;
  row.queries = published_queries_.load(std::memory_order_relaxed);
  switch (published_state_.load(std::memory_order_relaxed)) {
    case 'a': row.state = "active"; break;
    case 'I': row.state = "idle"; break;
    case 'T': row.state = "idle in transaction"; break;
    case 'E': row.state = "idle in transaction (aborted)"; break;
    default: row.state = "starting"; break;
  }
  return row;
}

void Session::End(std::optional<ErrorFields> final_error) {
  if (ended_) return;
  ended_ = true;
  final_error_ = std::move(final_error);
  client_.Cancel();
  if (backend_) backend_->Close();
}

void Session::BeginShutdown() {
  shutdown_requested_ = true;
  if (!relaying_) {
    client_.Close();
    return;
  }
  if (IdleOutsideTransaction()) End(AdminShutdown());
}

void Session::Abort() {
  if (!relaying_) {
    client_.Close();
    return;
  }
  End(AdminShutdown());
}

awaitable<void> Session::SendToClient(std::string_view bytes) {
  error_code ec;
  co_await client_.Write(asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec) client_writable_ = false;
}


}  // namespace pgshift::proxy
