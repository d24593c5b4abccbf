// A run of client messages for one link, as the planner leaves it, and what
// the session must do before and after sending it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/forward_list.h"
#include "proxy/session/expected_reply.h"
#include "routing/router.h"

namespace pgshift::proxy {

// What a step's messages do to its link's extended batch: begin one (or go
// on with it) without its Sync, end it with a Sync, or neither (a Query,
// COPY data).
enum class BatchEffect : uint8_t { kNone, kOpens, kCloses };

struct Step {
  // Back to a new step's state, keeping the buffers of `bytes` and
  // `replies` for the next client read.
  void Clear() {
    ForwardList kept_bytes = std::move(bytes);
    std::vector<ExpectedReply> kept_replies = std::move(replies);
    kept_bytes.clear();
    kept_replies.clear();
    *this = Step{};
    bytes = std::move(kept_bytes);
    replies = std::move(kept_replies);
  }

  routing::BackendId target = routing::BackendId::kOld;
  ForwardList bytes;
  // What its messages will be answered with, in their order.
  std::vector<ExpectedReply> replies;
  // Transaction control the other link must run too, before this step
  // (it is in the same client transaction).
  std::string on_other_link_first;
  // A later part of a Query split between servers: skipped when an
  // earlier part of the same group failed.
  uint64_t skip_if_failed = 0;
  // Its bytes begin a Query or an extended batch: pgshift may run a BEGIN
  // of its own before them.
  bool opens = false;
  BatchEffect batch = BatchEffect::kNone;  // as its last such message leaves it
  bool sealed = false;    // later messages go into a new step
  bool mirrored = false;  // a statement in it is mirrored to the other server
  // Its mirrored statement is in the client's transaction, as the client's
  // statements before it leave it (a BEGIN may precede it in the batch).
  bool in_client_transaction = false;
  // Its statement, when it is transaction control alone (COMMIT prepares
  // the mirror first; SAVEPOINT joins the other server).
  routing::TransactionKind transaction = routing::TransactionKind::kNone;
  // PREPARE TRANSACTION, COMMIT or ROLLBACK PREPARED: the identifier.
  std::string gid;
  // Sent instead of `bytes` when its transaction control must fail (a
  // COMMIT whose mirror could not be prepared, a statement after a failed
  // pipelined mirror): a statement whose error, refusal `fail_probe`, is
  // replaced.
  std::string fail_with;
  uint64_t fail_probe = 0;
  // A statement prepared before a reload, prepared again under the new
  // plan before the step (on its server; closed on the other): messages
  // ending in Sync, whose replies the client never sees.
  std::string reprepare;
  std::string close_elsewhere;
  // A COPY FROM STDIN whose mirror is settled once the client's data has
  // ended (the step with its CopyDone or CopyFail).
  bool copy_in = false;
  bool ends_copy = false;
};

}  // namespace pgshift::proxy
