// One client connection and its backend connection, for the connection's
// lifetime (session mode).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "protocol/error_fields.h"
#include "protocol/frame.h"
#include "protocol/messages/startup.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"
#include "proxy/server.h"
#include "routing/config.h"

namespace pgshift::proxy {

// One row of SHOW CLIENTS.
struct ClientRow {
  uint64_t session = 0;
  std::string client;
  std::string user;
  std::string database;
  int32_t backend_pid = 0;
  bool tls = false;
  std::string state;  // starting, idle, active, idle in transaction, ...
  uint64_t queries = 0;
  std::chrono::system_clock::time_point connected_at;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, tcp::socket socket, uint64_t id);
  ~Session();

  awaitable<void> Run();

  // Both run on the session's executor (the server posts them there).
  // Ends the session as soon as it is idle outside a transaction.
  void BeginShutdown();
  // Ends it now.
  void Abort();

  uint64_t id() const { return id_; }
  // Safe from any thread: reads only what the session has published.
  ClientRow Describe() const;
  asio::any_io_executor executor() { return client_.socket().get_executor(); }

 private:
  class ClientToBackend;
  class BackendToClient;

  awaitable<void> ForwardCancel(const protocol::CancelRequest& request);

  awaitable<void> Relay();
  awaitable<void> PumpClientToBackend();
  awaitable<void> PumpBackendToClient();
  // Records why the session ends (first reason wins) and stops both pumps.
  void End(std::optional<protocol::ErrorFields> final_error);
  bool IdleOutsideTransaction() const;
  // A Query, Sync or FunctionCall was sent (ReadyForQuery will answer it),
  // or answered. Also times the query cycle.
  void NoteSent();
  void NoteAnswered();
  // Sent and not yet answered.
  uint32_t PendingResults() const { return sent_count_ + untimed_; }
  // Makes the relay's state visible to Describe().
  void PublishState();

  awaitable<void> SendToClient(std::string_view bytes);

  Server& server_;
  const uint64_t id_;
  // The settings this session answers by; renewed between transactions.
  SettingsPtr settings_;
  const routing::Config& config() const { return *settings_->config; }
  Stream client_;
  std::unique_ptr<Stream> backend_;
  PacketBuffer client_buffer_;
  PacketBuffer backend_buffer_;
  std::string client_address_;
  const std::chrono::system_clock::time_point connected_at_ = std::chrono::system_clock::now();
  // Written once before `described_` is set, read by Describe() after.
  std::string user_;
  std::string database_;
  int32_t backend_pid_ = 0;
  bool tls_ = false;
  std::atomic<bool> described_{false};
  std::atomic<char> published_state_{'s'};  // 's' starting, 'a' active, else ReadyForQuery's
  std::atomic<uint64_t> published_queries_{0};
  uint64_t queries_ = 0;
  // Send times of unanswered queries, oldest first. When more are in flight
  // than fit, the rest are only counted (untimed_) until the backlog drains,
  // so answers never pair with the wrong query.
  using Clock = std::chrono::steady_clock;
  std::array<Clock::time_point, 32> sent_at_;
  uint32_t sent_head_ = 0;
  uint32_t sent_count_ = 0;
  uint32_t untimed_ = 0;
  bool admitted_ = false;
  std::optional<std::pair<int32_t, int32_t>> cancel_key_;

  // Relay state. Both pumps run on this session's executor, so no locking.
  bool relaying_ = false;
  bool ended_ = false;
  bool shutdown_requested_ = false;
  bool backend_pump_running_ = false;
  bool client_writable_ = true;        // false once a write to the client failed
  bool client_mid_message_ = false;    // the client has been sent part of a message
  bool client_sent_partial_ = false;   // the backend has been sent part of a message
  char transaction_status_ = 'I';
  char last_backend_type_ = 0;
  std::optional<protocol::ErrorFields> final_error_;
  std::unique_ptr<asio::steady_timer> backend_pump_done_;
};

}  // namespace pgshift::proxy
