// One client connection and its backend connection, for the connection's
// lifetime (session mode).
#pragma once

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
  std::string user_;
  std::string database_;
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
  int pending_results_ = 0;            // Query/Sync/FunctionCall not yet answered by ReadyForQuery
  char last_backend_type_ = 0;
  std::optional<protocol::ErrorFields> final_error_;
  std::unique_ptr<asio::steady_timer> backend_pump_done_;
};

}  // namespace pgshift::proxy
