// What a server's replies are expected to be, written down once by the
// planner, queued on the link the messages went to, and read by the relay as
// the replies arrive (one ExpectedReply per ReadyForQuery).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/error_fields.h"
#include "protocol/message_type.h"
#include "proxy/session/shadow_capture.h"
#include "proxy/two_phase.h"
#include "routing/mirror.h"

namespace pgshift::proxy {

// An exchange pgshift runs itself on a link (joining a transaction,
// finishing one on the other server); its reply never reaches the client.
struct InternalReply {
  bool done = false;
  std::optional<protocol::ErrorFields> error;
  std::optional<std::string> value;  // the first column of the first row, if any
  // Collected later (a pipelined mirror's apply): the client's next steps
  // do not wait for it (Link::Quiet).
  bool background = false;
};

// A reply cycle whose outcome the session acts on before the client may
// go on: one with writes mirrored to the other server (their rows are
// collected and its replies held back until the mirror is settled), or a
// client's COMMIT whose mirror is prepared on the other server.
struct MirrorBatch {
  // Which transaction the mirrored rows belong to.
  enum class Mode : uint8_t {
    // The client's own (begun earlier, or ahead of the write in its batch).
    kClientTransaction,
    // pgshift began one around the write (the client was outside one) and
    // ends it once the mirror is settled.
    kImplicit,
    // None: the client was outside a transaction but its batch had already
    // started, so the write committed on its own and the mirror follows.
    kAutocommitted,
    // The client's COMMIT: the mirror's transaction is prepared before it
    // and finished after it. Its replies are not held.
    kCommit,
  };
  enum class Outcome : uint8_t { kPending, kSucceeded, kFailed };

  struct Rows {
    std::shared_ptr<const routing::RemoteMirror> mirror;
    std::string json = "[";  // the rows as a JSON array, closed when applied
    size_t count = 0;
    std::vector<std::optional<std::string>> keys;
  };

  bool holds_replies() const { return mode != Mode::kCommit; }
  // A row for the mirror (its JSON and key) into rows[index].
  void KeepRow(size_t index, std::string_view json, std::optional<std::string> key) {
    const size_t key_bytes = (key ? key->size() : 0) + sizeof(key);
    Rows& r = rows[index];
    if (Hold(json.size() + key_bytes)) {
      if (r.count++ > 0) r.json += ',';
      r.json += json;
      r.keys.push_back(std::move(key));
    } else if (keys_past_limit_ + key_bytes <= max_bytes) {
      // Kept for the divergence log of a write that cannot be undone (it
      // committed on its own), within a second max_bytes.
      keys_past_limit_ += key_bytes;
      r.keys.push_back(std::move(key));
    } else {
      keys_lost = true;
    }
  }
  // A reply for the client, held until the mirror is settled.
  void HoldReply(std::string_view bytes) {
    if (Hold(bytes.size())) held.append(bytes);
  }
  // Past max_bytes: the rows' JSON and the replies are let go (the keys
  // kept so far stay, for the divergence log), and the write fails.
  bool too_large() const { return bytes > max_bytes; }
  // The mirror runs in a transaction of pgshift's own, not the client's.
  bool own_transaction() const { return mode == Mode::kImplicit || mode == Mode::kAutocommitted; }

  Mode mode = Mode::kClientTransaction;
  size_t max_bytes = SIZE_MAX;
  size_t bytes = 0;                     // what it held, or would have
  bool keys_lost = false;               // past twice max_bytes even its keys were let go
  Outcome outcome = Outcome::kPending;  // set by its ReadyForQuery
  std::vector<Rows> rows;
  std::string held;  // the client's replies, while holds_replies()
  // `held` ends with the cycle's ReadyForQuery (not when a later part of
  // the client's Query carries on).
  bool held_ready = false;
  // The client's Query it belongs to, when split (ExpectedReply::group): a
  // failed mirror skips the rest of it.
  uint64_t group = 0;
  // That ReadyForQuery's transaction status.
  protocol::TransactionStatus status = protocol::TransactionStatus::kIdle;
  std::shared_ptr<InternalReply> begun;  // kImplicit: its BEGIN's reply (with the txid)
  // kCommit: the mirror's prepared transaction (no gid when the mirror
  // server cannot prepare, so it commits after), which recovery leaves to
  // this session while it settles.
  SettlingMirror prepared;

 private:
  size_t keys_past_limit_ = 0;
  bool Hold(size_t n) {
    bytes += n;
    if (!too_large()) return true;
    for (Rows& r : rows) r.json = std::string();
    held = std::string();
    return false;
  }
};

// One result the client expects, in order within a reply cycle.
struct ReplyUnit {
  bool describe = false;  // a Describe's answer, else a statement's result
  routing::ResultShape shape;
  int32_t mirror_index = -1;               // its rows' entry in the cycle's MirrorBatch
  std::shared_ptr<ShadowCapture> capture;  // a sampled read's result is kept
};

// The replies up to one ReadyForQuery: a Query's, or an extended batch's.
struct ExpectedReply {
  // Written by the planner.
  std::shared_ptr<InternalReply> internal;  // null: the client's
  bool open = false;                        // an extended batch its Sync has not closed yet
  // Continues the link's open batch, if it has one (an Execute, Describe or
  // Sync whose batch began in an earlier step): merged into it when queued.
  bool joins_open = false;
  std::vector<ReplyUnit> units;  // empty: nothing in it to reshape
  // A part of the client's Query that another part follows: its
  // ReadyForQuery goes to the client only if it failed, which ends the
  // Query (`group` then stops the parts after it).
  bool continues = false;
  uint64_t group = 0;
  // The client's Query was sent as an extended batch on a statement pgshift
  // prepared (Plan::parameterized), this key in Link::statements; its
  // ParseComplete, BindComplete and NoData are not the client's.
  // `prepares`: the batch's Parse creates the statement.
  std::string statement_key;
  bool prepares = false;
  // Attached when its step runs.
  std::shared_ptr<MirrorBatch> mirror;

  // Kept by the relay as the replies arrive.
  size_t next = 0;  // the unit the next result belongs to
  bool failed = false;
  bool parse_completed = false;
};

}  // namespace pgshift::proxy
