#include "proxy/server.h"

#include <boost/asio/signal_set.hpp>

#include "common/strings.h"
#include "proxy/log.h"
#include "proxy/session.h"

namespace pgshift::proxy {

Server::Server(routing::ConfigPtr config) : config_(std::move(config)) {}

Server::~Server() {
  for (auto& w : workers_) {
    w->guard.reset();
    w->context.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

routing::ConfigPtr Server::config() const { return config_; }

const protocol::ScramVerifier* Server::ScramVerifierFor(const routing::UserConfig& user) const {
  auto it = verifiers_.find(user.name);
  return it == verifiers_.end() ? nullptr : &it->second;
}

bool Server::TryAdmitClient() {
  int limit = config_->proxy.max_clients;
  int current = clients_.load();
  while (current < limit) {
    if (clients_.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

void Server::ReleaseClient() { clients_.fetch_sub(1); }

absl::Status Server::Setup() {
  const routing::ProxySettings& p = config_->proxy;
  // SCRAM verifiers for plaintext passwords are derived once, not per login.
  if (p.auth_method == routing::AuthMethod::kScramSha256) {
    for (const routing::UserConfig& u : config_->users) {
      if (u.password.empty()) continue;
      if (protocol::ScramVerifier::LooksLikeVerifier(u.password)) {
        verifiers_[u.name] = *protocol::ScramVerifier::Parse(u.password);
      } else {
        verifiers_[u.name] = protocol::ScramVerifier::FromPassword(u.password);
      }
    }
  }
  if (p.tls_enabled()) {
    client_tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    client_tls_->set_options(asio::ssl::context::default_workarounds |
                             asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                             asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    error_code ec;
    client_tls_->use_certificate_chain_file(p.tls_cert, ec);
    if (ec) return absl::InvalidArgumentError(StrCat("proxy.tls_cert \"", p.tls_cert, "\": ", ec.message()));
    client_tls_->use_private_key_file(p.tls_key, asio::ssl::context::pem, ec);
    if (ec) return absl::InvalidArgumentError(StrCat("proxy.tls_key \"", p.tls_key, "\": ", ec.message()));
  }
  // Toward backends TLS encrypts but does not verify, as libpq's sslmode=require.
  backend_tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  backend_tls_->set_verify_mode(asio::ssl::verify_none);

  error_code ec;
  auto address = asio::ip::make_address(p.listen.host, ec);
  if (ec) return absl::InvalidArgumentError(StrCat("proxy.listen: bad address \"", p.listen.host, "\""));
  tcp::endpoint endpoint(address, p.listen.port);
  acceptor_ = std::make_unique<tcp::acceptor>(main_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        StrCat("cannot listen on ", p.listen.host, ":", p.listen.port, ": ", ec.message()));
  }

  int workers = p.workers > 0 ? p.workers : static_cast<int>(std::thread::hardware_concurrency());
  if (workers < 1) workers = 1;
  for (int i = 0; i < workers; ++i) {
    auto w = std::make_unique<Worker>();
    w->guard = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        w->context.get_executor());
    Worker* raw = w.get();
    w->thread = std::thread([raw] { raw->context.run(); });
    workers_.push_back(std::move(w));
  }
  LogEvent(LogLevel::kInfo, "listening",
           {{"address", StrCat(p.listen.host, ":", acceptor_->local_endpoint().port())},
            {"workers", StrCat(workers)},
            {"auth_method", routing::AuthMethodName(p.auth_method)},
            {"tls", client_tls_ ? "on" : "off"},
            {"backend_old", StrCat(config_->old_backend.endpoint.host, ":",
                                   config_->old_backend.endpoint.port)}});
  return absl::OkStatus();
}

int Server::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    LogEvent(LogLevel::kError, "startup_failed", {{"reason", MessageOf(s)}});
    return 1;
  }
  asio::co_spawn(main_, Accept(), asio::detached);
  asio::co_spawn(main_, HandleSignals(), asio::detached);
  main_.run();
  for (auto& w : workers_) {
    w->guard.reset();
    w->context.stop();
    w->thread.join();
  }
  workers_.clear();
  LogEvent(LogLevel::kInfo, "stopped", {});
  return 0;
}

awaitable<void> Server::Accept() {
  while (acceptor_->is_open()) {
    Worker& worker = *workers_[next_worker_++ % workers_.size()];
    error_code ec;
    tcp::socket socket = co_await acceptor_->async_accept(worker.context, WithError(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) break;
      LogEvent(LogLevel::kWarning, "accept_failed", {{"reason", ec.message()}});
      continue;
    }
    auto session = std::make_shared<Session>(*this, std::move(socket), next_session_id_++);
    {
      absl::MutexLock lock(&sessions_mutex_);
      sessions_[session->id()] = session;
    }
    live_sessions_.fetch_add(1);
    asio::co_spawn(
        session->executor(),
        [this, session]() -> awaitable<void> {
          co_await session->Run();
          {
            absl::MutexLock lock(&sessions_mutex_);
            sessions_.erase(session->id());
          }
          live_sessions_.fetch_sub(1);
        },
        asio::detached);
  }
}

awaitable<void> Server::HandleSignals() {
  asio::signal_set signals(main_, SIGTERM, SIGINT);
  error_code ec;
  int signal = co_await signals.async_wait(WithError(ec));
  if (ec) co_return;
  LogEvent(LogLevel::kInfo, "shutdown_started",
           {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"},
            {"sessions", StrCat(live_sessions_.load())},
            {"timeout_s", StrCat(config_->proxy.shutdown_timeout_s)}});
  co_await Shutdown();
}

void Server::ForEachSession(void (Session::*action)()) {
  absl::MutexLock lock(&sessions_mutex_);
  for (auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) {
      asio::post(session->executor(), [session, action] { ((*session).*action)(); });
    }
  }
}

awaitable<void> Server::Shutdown() {
  error_code ignored;
  acceptor_->close(ignored);
  ForEachSession(&Session::BeginShutdown);
  asio::steady_timer timer(main_);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(config_->proxy.shutdown_timeout_s * 1000));
  bool aborted = false;
  while (live_sessions_.load() > 0) {
    if (!aborted && std::chrono::steady_clock::now() >= deadline) {
      LogEvent(LogLevel::kWarning, "shutdown_timeout",
               {{"sessions_closed", StrCat(live_sessions_.load())}});
      ForEachSession(&Session::Abort);
      aborted = true;
    }
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(WithError(ignored));
  }
  // Nothing is left on main_ now (the acceptor is closed, the signal
  // handled), so Run()'s main_.run() returns and the workers are stopped
  // after every operation that refers to them has completed.
}

}  // namespace pgshift::proxy
