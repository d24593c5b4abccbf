// One of a session's server connections: its socket and state, the replies
// it still owes (in order), and what pgshift keeps about it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "common/strings.h"
#include "protocol/message_type.h"
#include "proxy/packet_buffer.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/step.h"
#include "proxy/stream.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct Link {
  enum class State : uint8_t {
    kAbsent,  // not connected yet (new is connected when first needed)
    kReady,
    // The client's extended batch is under way here (sent up to a message
    // before its Sync): nothing of pgshift's may go in between.
    kInBatch,
    // New was lost while it held only pgshift's work; it is connected again
    // for the next transaction that needs it.
    kBroken,
  };

  // Connected, and not lost.
  bool ready() const { return state == State::kReady || state == State::kInBatch; }
  bool in_batch() const { return state == State::kInBatch; }
  bool broken() const { return state == State::kBroken; }
  bool absent() const { return state == State::kAbsent; }

  // A fresh connection: nothing of the old one's is kept.
  void Connect(std::unique_ptr<Stream> connected, int32_t pid) {
    stream = std::move(connected);
    state = State::kReady;
    buffer.Consume(buffer.data().size());
    backend_pid = pid;
    transaction_status = protocol::TransactionStatus::kIdle;
    statements.clear();
    settings_version = 0;  // its startup parameters are the client's
    transaction_settings = 0;
  }
  // The client's bytes of a step were written here: the batch they leave
  // open, or close.
  void Sent(BatchEffect effect) {
    if (!ready()) return;
    switch (effect) {
      case BatchEffect::kNone: break;
      case BatchEffect::kOpens: state = State::kInBatch; break;
      case BatchEffect::kCloses: state = State::kReady; break;
    }
  }
  // The connection is gone; so is any transaction it had.
  void Break() {
    state = State::kBroken;
    stream->Close();
    if (transaction_status != protocol::TransactionStatus::kIdle) {
      transaction_status = protocol::TransactionStatus::kFailed;
    }
  }

  // Queues `reply` (merged into the open batch when it joins one), with
  // `batch` attached when it has mirrored results. A reply that closes a
  // client's cycle counts in forward_pending; `closes` says it did, with
  // the batch to settle when that cycle has one.
  struct Queued {
    bool closes = false;
    std::shared_ptr<MirrorBatch> mirror;
  };
  Queued Expect(ExpectedReply reply, const std::shared_ptr<MirrorBatch>& batch);

  // pgshift has an exchange of its own under way here that the session
  // waits for (not one collected later: InternalReply::background).
  bool HasInternal() const {
    for (const ExpectedReply& r : replies) {
      if (r.internal != nullptr && !r.internal->background) return true;
    }
    return false;
  }
  // Nothing but pgshift's own exchanges await replies here.
  bool OnlyInternal() const {
    for (const ExpectedReply& r : replies) {
      if (r.internal == nullptr) return false;
    }
    return true;
  }
  // Nothing is awaited here: its transaction status is as last reported,
  // but for a background exchange (its outcome is collected before a step
  // that depends on the status).
  bool Quiet() const { return forward_pending == 0 && !HasInternal(); }

  routing::BackendId server = routing::BackendId::kOld;
  std::string_view name;  // "old" or "new", for messages
  State state = State::kAbsent;
  std::unique_ptr<Stream> stream;
  PacketBuffer buffer;
  protocol::TransactionStatus transaction_status = protocol::TransactionStatus::kIdle;
  // Reply cycles still to come, in order.
  std::deque<ExpectedReply> replies;
  uint32_t forward_pending = 0;  // the client's closed cycles in `replies`
  bool pump_running = false;
  // Statements pgshift prepared on this connection: for the client's
  // Queries (Plan::parameterized; keyed by text and parameter types, used
  // once their ParseComplete has come, so that a failing Parse fails only
  // its own Query), and for its own mirror writes (ApplyRows).
  struct ServerStatement {
    std::string name;
    bool parsed = false;
    uint64_t last_used = 0;  // statement_uses when last sent
  };
  absl::flat_hash_map<std::string, ServerStatement> statements;
  uint64_t statement_uses = 0;
  // A name for a statement pgshift prepares here, never used before on
  // this connection.
  std::string NameStatement() { return StrCat("pgshift_statement_", ++statements_named); }
  uint64_t statements_named = 0;
  // New: the version of the client's settings it was given
  // (SessionSettings::version()), and how many of the current
  // transaction's setting changes it has run.
  uint64_t settings_version = 0;
  size_t transaction_settings = 0;
  char last_type = 0;
  int32_t backend_pid = 0;
};

}  // namespace pgshift::proxy
