// What the relay does with one server message, decided from the message's
// type and the reply the link expects (the front of its queue). Pure: it
// reads the expectation and says what to do; Advance() then moves the
// expectation on, so that a sequence of messages is tested without sockets.
#pragma once

#include <cstddef>
#include <cstdint>

#include "protocol/frame.h"
#include "proxy/session/expected_reply.h"

namespace pgshift::proxy {

enum class ReplyAction : uint8_t {
  kForward,        // to the client as it is, streamed
  kDrop,           // not the client's: streamed and discarded
  kReadyForQuery,  // ends the reply cycle (read whole)
  kInvalid,        // a ReadyForQuery of the wrong length: a protocol violation
  kInternal,       // pgshift's own exchange: discarded
  kInternalWhole,  // pgshift's own exchange: its error, or the first row's value, is read
  kReshapeTag,     // CommandComplete: given the client's statement's tag
  kStripColumns,   // RowDescription: pgshift's mirror columns taken out (NoData when no rows)
  kCollectRows,    // DataRow: pgshift's mirror columns kept for the mirror, the rest forwarded
  kCapture,        // RowDescription or DataRow of a sampled read: kept, and forwarded
  kInspectError,   // ErrorResponse read whole: a refusal's, a sampled read's, or pgshift's
                   // statement's
};

struct ReplyDecision {
  // What happens to a sampled read's capture.
  enum class CaptureStep : uint8_t {
    kNone,
    kKeep,        // this message goes into the current unit's capture
    kKeepNext,    // into the next unit's (a Describe of the portal its Execute reads)
    kComplete,    // the result is complete: its comparison is queued
    kIncomplete,  // the result ended without all of it: queued, as not comparable
  };

  ReplyAction action = ReplyAction::kForward;
  CaptureStep capture = CaptureStep::kNone;
  // The unit whose shape governs the message (the current one), or -1.
  int32_t unit = -1;
  bool advance = false;             // the message ends the current unit
  bool ends_units = false;          // an error: the server skips the rest of the cycle
  bool fails_cycle = false;         // an error in the cycle
  bool statement_parsed = false;    // pgshift's prepared statement's ParseComplete
  bool from_own_statement = false;  // an error of pgshift's prepared statement
  // The replies wait with the cycle's mirror until it is settled.
  bool held = false;

  protocol::Delivery delivery() const;
};

// `expected` is the front of the link's queue (null: none is expected);
// `refusals_pending`: an error may be a refusal's probe.
ReplyDecision ClassifyReply(const ExpectedReply* expected, char type, size_t size,
                            bool refusals_pending);

// Moves `expected` on past the message `decision` was made for.
void Advance(const ReplyDecision& decision, ExpectedReply& expected);

}  // namespace pgshift::proxy
