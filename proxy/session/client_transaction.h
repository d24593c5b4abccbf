// The client's transaction as pgshift follows it: as the client was last
// told, and as the statements it has sent since will leave it.
#pragma once

#include <vector>

#include "protocol/message_type.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct ClientTransaction {
  // Until every reply to the statements sent since has come.
  enum class Sent : uint8_t {
    kAsReported,  // nothing sent changes it
    kBegun,       // a BEGIN was sent ahead of its reply
    kEnded,       // a COMMIT or ROLLBACK was
  };

  // In a transaction as the client's statements planned so far leave it:
  // a BEGIN sent ahead of its reply (pgjdbc sends it in the batch of the
  // first statement) makes what follows part of the client's transaction.
  bool open() const {
    switch (sent) {
      case Sent::kBegun: return true;
      case Sent::kEnded: return false;
      case Sent::kAsReported: break;
    }
    return reported != protocol::TransactionStatus::kIdle;
  }

  // As the client was last told (its last ReadyForQuery).
  protocol::TransactionStatus reported = protocol::TransactionStatus::kIdle;
  Sent sent = Sent::kAsReported;
  // It ends with a COMMIT: its setting changes stand.
  bool commit_requested = false;
  // Migrating tables written in it: their shadow reads are skipped (the
  // other side cannot see those writes).
  std::vector<routing::TableCounters*> written_tables;
  // Queries split between servers: the last one whose part failed (its
  // later parts are skipped).
  uint64_t failed_group = 0;
};

}  // namespace pgshift::proxy
