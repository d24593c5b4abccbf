// The session's client: its connection (socket, unread bytes, how far each
// direction is through a message, the reply cycles it awaits), and its
// record (who it is, and what SHOW CLIENTS says of it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "protocol/messages/startup.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/session/query_timer.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

struct ClientConnection {
  // What may still be written to the client.
  enum class Output : uint8_t {
    kAtBoundary,  // between whole messages: anything
    kMidMessage,  // part of a server's message is relayed: only the rest of it
    kFailed,      // a write failed (or the client went away): nothing
  };
  // Who writes to the client: one at a time, and a server's message begun
  // is finished before anyone else writes (a notice or a FATAL from the
  // server that is not answering waits for the other's DataRow to end).
  enum class Writer : uint8_t { kNone, kOld, kNew, kSession };

  explicit ClientConnection(tcp::socket socket) : stream(std::move(socket)), buffer(4096) {}

  bool MayWrite(Writer who) const { return writer == Writer::kNone || writer == who; }
  // The two ways Output changes: `who` wrote, up to a message boundary or
  // into a message (and keeps the client until it is finished); a write
  // failed.
  void Relayed(Writer who, bool mid_message) {
    writer = mid_message ? who : Writer::kNone;
    if (output != Output::kFailed) output = mid_message ? Output::kMidMessage : Output::kAtBoundary;
  }
  void Failed() { output = Output::kFailed; }
  bool writable() const { return output != Output::kFailed; }
  bool at_boundary() const { return output == Output::kAtBoundary; }

  Stream stream;
  PacketBuffer buffer;  // read from the client, not yet planned
  Output output = Output::kAtBoundary;
  Writer writer = Writer::kNone;
  bool forwarding_partial = false;  // a server has been sent part of a client message
  QueryTimer cycles;                // reply cycles sent and not yet answered, timed
};

// Written once by the login before `described` is set; read by
// Describe() from any thread after. The published fields are atomics.
struct ClientRecord {
  enum class State : uint8_t { kStarting, kActive, kIdle, kInTransaction, kFailedTransaction };

  std::string address;
  protocol::StartupMessage startup;
  const std::chrono::system_clock::time_point connected_at = std::chrono::system_clock::now();
  std::string user;
  std::string database;
  int32_t backend_pid = 0;
  bool tls = false;
  std::atomic<bool> described{false};
  // What SHOW CLIENTS says the session is doing, and its query count.
  std::atomic<State> state{State::kStarting};
  std::atomic<uint64_t> queries{0};
  bool admitted = false;  // holds one of max_clients
  std::optional<std::pair<int32_t, int32_t>> cancel_key;
};

}  // namespace pgshift::proxy
